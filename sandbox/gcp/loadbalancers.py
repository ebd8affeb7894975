"""The Compute resources GKE's Gateway controller builds for a regional Gateway, and their API.

A programmed Gateway of class gke-l7-regional-external-managed or gke-l7-rilb owns, in the
cluster's project: a regional address and forwarding rule, a regional target HTTP proxy and URL map
(same name), one regional backend service and health check (same name) per backend plus the
`gw-serve404` default one, zonal network endpoint groups, and a firewall rule on the VPC shared by
the cluster's Gateways. Sources:
- The set and the names: `kubectl describe gateway` on GKE lists them in annotations
  (networking.gke.io/addresses, forwarding-rules, target-http-proxies, url-maps, backend-services,
  health-checks, firewalls), e.g. forwardingRules/gkegw1-nv9e-exercises-log-ping-app-gateway-tz4nlc0g34o7,
  urlMaps and targetHttpProxies/gkegw1-nv9e-exercises-log-ping-app-gateway-z33kukono48t,
  backendServices and healthChecks/gkegw1-nv9e-exercises-gw-serve404-80-t9htdxlbxe5i,
  firewalls/gkegw1-nv9e-l7-default-global (arkb2023/devops-kubernetes, ping-pong exercise 3.4
  README); regional forwarding rules are regions/R/forwardingRules/gkegw1-s67w-gateway-internal-http-…
  (GKE multi-region internal Gateway recipe); names longer than 63 characters are cut field by
  field (gkegw1-pzx5-llm-d-infere-qwen2-3b-pattern1-i-54321-12oqnptayf7u).
- NEGs: k8s1-<cluster uid 8>-<namespace>-<service>-<port>-<hash 8>, e.g.
  k8s1-5b6304fe-secure-app-secure-demo-8080-7c281a30 (GKE container-native load balancing).
- The regional firewall name `gkegw1-<hash>-l7-<network>-<region>` follows the global one by
  analogy (no public sample of the regional one was found).
- The `description` JSON naming the Gateway follows the shape `{"k8s-resource": ...}`; no public
  sample was found, so the DAG relies on the names and on references, never on this text.
- Left behind when the cluster goes first: orphaned gkegw1 firewalls and k8s1 NEGs then block the
  VPC's deletion with resourceInUseByAnotherResource (GoogleCloudPlatform accelerated-platforms,
  "Cleanup resources errors").
"""

from __future__ import annotations

import hashlib
import json
import string
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.gcp import regions, validation
from sandbox.gcp.errors import in_use, not_found
from sandbox.gcp.listing import SELF_LINK_BASE, list_json
from sandbox.gcp.operations import new_numeric_id, rfc3339
from sandbox.gcp.state import GcpState

NAME_LIMIT = 63
_ALPHABET = string.ascii_lowercase + string.digits
# collection -> (scope kind, resource kind, list kind, URL parameter)
COLLECTIONS: dict[str, tuple[str, str, str, str]] = {
    "forwardingRules": ("regions", "compute#forwardingRule", "compute#forwardingRuleList", "forwardingRule"),
    "targetHttpProxies": (
        "regions",
        "compute#targetHttpProxy",
        "compute#targetHttpProxyList",
        "targetHttpProxy",
    ),
    "urlMaps": ("regions", "compute#urlMap", "compute#urlMapList", "urlMap"),
    "backendServices": ("regions", "compute#backendService", "compute#backendServiceList", "backendService"),
    "healthChecks": ("regions", "compute#healthCheck", "compute#healthCheckList", "healthCheck"),
    "addresses": ("regions", "compute#address", "compute#addressList", "address"),
    "networkEndpointGroups": (
        "zones",
        "compute#networkEndpointGroup",
        "compute#networkEndpointGroupList",
        "networkEndpointGroup",
    ),
    "firewalls": ("global", "compute#firewall", "compute#firewallList", "firewall"),
}
AGGREGATED = {
    "forwardingRules": "compute#forwardingRuleAggregatedList",
    "addresses": "compute#addressAggregatedList",
    "networkEndpointGroups": "compute#networkEndpointGroupAggregatedList",
}
# Regional Envoy-based load balancers: they use the region's proxy-only subnet.
MANAGED_SCHEMES = ("EXTERNAL_MANAGED", "INTERNAL_MANAGED")
SCHEME_BY_CLASS = {
    "gke-l7-regional-external-managed": "EXTERNAL_MANAGED",
    "gke-l7-rilb": "INTERNAL_MANAGED",
}
# Google's health-check probers (https://cloud.google.com/load-balancing/docs/health-check-concepts).
HEALTH_CHECK_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]


def short_hash(*parts: str, length: int) -> str:
    digest = int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16)
    chars = []
    for _ in range(length):
        digest, index = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def trim_fields(fields: list[str], budget: int) -> list[str]:
    """Cut the longest field one character at a time until the fields fit `budget` characters."""
    fields = list(fields)
    while sum(map(len, fields)) > budget and any(fields):
        longest = max(range(len(fields)), key=lambda i: len(fields[i]))
        fields[longest] = fields[longest][:-1]
    return fields


def gkegw_name(cluster_hash: str, middle: list[str], suffix: str) -> str:
    prefix = f"gkegw1-{cluster_hash}-"
    budget = NAME_LIMIT - len(prefix) - len(suffix) - 1 - (len(middle) - 1)
    return prefix + "-".join(trim_fields(middle, budget)) + "-" + suffix


def link(project: str, scope: str, collection: str, name: str) -> str:
    return f"{SELF_LINK_BASE}projects/{project}/{scope}/{collection}/{name}"


@dataclass
class GatewayLoadBalancer:
    """What the Gateway controller knows when it builds a Gateway's load balancer."""

    project: str
    project_number: str
    region: str
    network: str
    subnetwork: str
    cluster_hash: str
    cluster_uid8: str
    namespace: str
    gateway: str
    gateway_uid: str
    gateway_class: str
    address: str
    port: int
    backends: list[tuple[str, int]] = field(default_factory=list)

    @property
    def description(self) -> str:
        # The shape is not published (see the module docstring); the DAG does not read it.
        return json.dumps({"k8s-resource": f"/namespaces/{self.namespace}/gateways/{self.gateway}"})

    def frontend_name(self, role: str) -> str:
        return gkegw_name(
            self.cluster_hash, [self.namespace, self.gateway], short_hash(self.gateway_uid, role, length=12)
        )

    def backend_name(self, backend: str, port: int) -> str:
        return gkegw_name(
            self.cluster_hash,
            [self.namespace, backend, str(port)],
            short_hash(self.cluster_hash, self.namespace, backend, str(port), length=12),
        )

    def neg_name(self, backend: str, port: int) -> str:
        suffix = hashlib.sha256(f"{self.namespace}/{backend}/{port}".encode()).hexdigest()[:8]
        prefix = f"k8s1-{self.cluster_uid8}-"
        budget = NAME_LIMIT - len(prefix) - len(suffix) - 3
        return prefix + "-".join(trim_fields([self.namespace, backend, str(port)], budget)) + "-" + suffix

    @property
    def firewall_name(self) -> str:
        return gkegw_name(self.cluster_hash, ["l7", self.network, self.region], "").rstrip("-")


class LoadBalancerBuilder:
    """Writes a Gateway's resources into the Compute state and removes them, as GKE's controller does."""

    def __init__(self, state: GcpState) -> None:
        self._state = state

    def build(self, spec: GatewayLoadBalancer) -> list[tuple[str, str, str]]:
        """Create what is missing (idempotent); returns (collection, scope, name) of each resource."""
        region_scope = f"regions/{spec.region}"
        scheme = SCHEME_BY_CLASS.get(spec.gateway_class, "EXTERNAL_MANAGED")
        network_link = link(spec.project, "global", "networks", spec.network)
        subnet_link = link(spec.project, region_scope, "subnetworks", spec.subnetwork)
        created: list[tuple[str, str, str]] = []

        def put(collection: str, scope: str, name: str, body: dict) -> str:
            self_link = link(spec.project, scope, collection, name)
            key = (spec.project, scope, name)
            resources = self._state.load_balancing[collection]
            if key not in resources:
                resources[key] = {
                    "kind": COLLECTIONS[collection][1],
                    "id": new_numeric_id(),
                    "creationTimestamp": rfc3339(_now()),
                    "name": name,
                    "description": spec.description,
                    "selfLink": self_link,
                    **body,
                }
            created.append((collection, scope, name))
            return self_link

        def region_field(body: dict) -> dict:
            return {"region": f"{SELF_LINK_BASE}projects/{spec.project}/{region_scope}", **body}

        services = []
        for backend, port in [("gw-serve404", 80), *spec.backends]:
            name = spec.backend_name(backend, port)
            check = put(
                "healthChecks",
                region_scope,
                name,
                region_field({"type": "HTTP", "httpHealthCheck": {"port": port, "requestPath": "/"}}),
            )
            groups = []
            if backend != "gw-serve404":
                for zone in regions.zones_of(spec.region):
                    neg = put(
                        "networkEndpointGroups",
                        f"zones/{zone}",
                        spec.neg_name(backend, port),
                        {
                            "zone": f"{SELF_LINK_BASE}projects/{spec.project}/zones/{zone}",
                            "network": network_link,
                            "subnetwork": subnet_link,
                            "networkEndpointType": "GCE_VM_IP_PORT",
                            "defaultPort": port,
                            "size": 0,
                        },
                    )
                    groups.append({"group": neg, "balancingMode": "RATE", "maxRatePerEndpoint": 1e8})
            services.append(
                put(
                    "backendServices",
                    region_scope,
                    name,
                    region_field(
                        {
                            "loadBalancingScheme": scheme,
                            "protocol": "HTTP",
                            "healthChecks": [check],
                            "backends": groups,
                        }
                    ),
                )
            )
        proxy_name = spec.frontend_name("proxy")
        url_map = put(
            "urlMaps",
            region_scope,
            proxy_name,
            region_field(
                {
                    "defaultService": services[0],
                    "hostRules": [{"hosts": ["*"], "pathMatcher": "pm"}] if len(services) > 1 else [],
                    "pathMatchers": [{"name": "pm", "defaultService": services[1]}]
                    if len(services) > 1
                    else [],
                }
            ),
        )
        proxy = put("targetHttpProxies", region_scope, proxy_name, region_field({"urlMap": url_map}))
        address_body: dict[str, Any] = {
            "address": spec.address,
            "addressType": "INTERNAL" if scheme == "INTERNAL_MANAGED" else "EXTERNAL",
            "status": "IN_USE",
        }
        if scheme == "INTERNAL_MANAGED":
            address_body.update(subnetwork=subnet_link, purpose="SHARED_LOADBALANCER_VIP")
        address_key = (spec.project, region_scope, spec.frontend_name("address"))
        put("addresses", region_scope, address_key[2], region_field(address_body))
        rule_body: dict[str, Any] = {
            "IPAddress": spec.address,
            "IPProtocol": "TCP",
            "portRange": f"{spec.port}-{spec.port}",
            "target": proxy,
            "loadBalancingScheme": scheme,
            "network": network_link,
        }
        if scheme == "INTERNAL_MANAGED":
            rule_body["subnetwork"] = subnet_link
        rule = put("forwardingRules", region_scope, spec.frontend_name("rule"), region_field(rule_body))
        self._state.load_balancing["addresses"][address_key]["users"] = [rule]
        proxy_ranges = [
            s["ipCidrRange"]
            for s in self._state.subnetworks_of(spec.project, spec.network)
            if s.get("purpose") == "REGIONAL_MANAGED_PROXY"
        ]
        put(
            "firewalls",
            "global",
            spec.firewall_name,
            {
                "network": network_link,
                "direction": "INGRESS",
                "priority": 1000,
                "sourceRanges": HEALTH_CHECK_RANGES + proxy_ranges,
                "allowed": [{"IPProtocol": "tcp", "ports": ["0-65535"]}],
            },
        )
        return created

    def release(self, project: str, created: list[tuple[str, str, str]], keep_firewall: bool) -> None:
        """Delete the Gateway's resources, users first; the firewall only with the cluster's last Gateway."""
        for collection in (
            "forwardingRules",
            "addresses",
            "targetHttpProxies",
            "urlMaps",
            "backendServices",
            "healthChecks",
            "networkEndpointGroups",
            "firewalls",
        ):
            if collection == "firewalls" and keep_firewall:
                continue
            for created_collection, scope, name in created:
                if created_collection == collection:
                    self._state.load_balancing[collection].pop((project, scope, name), None)


def gateway_annotations(project_number: str, created: list[tuple[str, str, str]]) -> dict[str, str]:
    """The networking.gke.io/<collection> annotations GKE writes on a Gateway (paths by project number)."""
    names = {
        "addresses": "addresses",
        "forwardingRules": "forwarding-rules",
        "targetHttpProxies": "target-http-proxies",
        "urlMaps": "url-maps",
        "backendServices": "backend-services",
        "healthChecks": "health-checks",
        "firewalls": "firewalls",
    }
    paths: dict[str, list[str]] = {}
    for collection, scope, name in created:
        if collection in names:
            path = f"/projects/{project_number}/{scope}/{collection}/{name}"
            if path not in paths.setdefault(collection, []):
                paths[collection].append(path)
    return {f"networking.gke.io/{names[c]}": ", ".join(p) for c, p in paths.items()}


def referrers(state: GcpState, project: str, self_link: str) -> list[str]:
    """Self links of the load-balancer resources that point at `self_link`, as Compute checks on delete."""
    found = []
    for collection, resource in state.lb_resources(project):
        if resource["selfLink"] == self_link:
            continue
        if self_link in _links_in(resource) or (
            collection == "forwardingRules" and _address_link(state, project, resource) == self_link
        ):
            found.append(resource["selfLink"])
    return sorted(found)


def subnetwork_users(state: GcpState, project: str, subnet: dict) -> list[str]:
    """What keeps a subnet: resources in it; for an ACTIVE proxy-only subnet, the region's managed
    forwarding rules ("You can't delete an active proxy-only subnet while a regional Envoy-based load
    balancer uses it": https://cloud.google.com/load-balancing/docs/proxy-only-subnets)."""
    users = referrers(state, project, subnet["selfLink"])
    if subnet.get("purpose") == "REGIONAL_MANAGED_PROXY" and subnet.get("role") == "ACTIVE":
        users += [
            rule["selfLink"]
            for collection, rule in state.lb_resources(project)
            if collection == "forwardingRules"
            and rule.get("loadBalancingScheme") in MANAGED_SCHEMES
            and rule.get("network") == subnet["network"]
            and rule.get("region") == subnet["region"]
        ]
    return sorted(set(users))


def _links_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if value.startswith(SELF_LINK_BASE) else set()
    if isinstance(value, dict):
        return set().union(
            *(_links_in(v) for k, v in value.items() if k not in ("selfLink", "region", "zone", "users"))
        )
    if isinstance(value, list):
        return set().union(*(_links_in(v) for v in value))
    return set()


def _address_link(state: GcpState, project: str, rule: dict) -> str | None:
    for collection, address in state.lb_resources(project):
        if collection == "addresses" and address.get("address") == rule.get("IPAddress"):
            return address["selfLink"]
    return None


class LoadBalancerApi:
    """list/get/delete (and aggregatedList) for the collections above; deletes are Compute operations."""

    def __init__(self, compute: Any) -> None:
        self._compute = compute
        self._state: GcpState = compute._state

    def routes(self) -> list[web.RouteDef]:
        project = "/compute/v1/projects/{project}"
        routes = []
        for collection, (scope_kind, *_) in COLLECTIONS.items():
            scope = {"regions": "/regions/{region}", "zones": "/zones/{zone}", "global": "/global"}[
                scope_kind
            ]
            base = f"{project}{scope}/{collection}"
            routes += [
                web.get(base, self._list(collection)),
                web.get(base + "/{name}", self._get(collection)),
                web.delete(base + "/{name}", self._compute._mutation(self._delete(collection))),
            ]
        for collection in AGGREGATED:
            routes.append(web.get(f"{project}/aggregated/{collection}", self._aggregated(collection)))
        return routes

    @staticmethod
    def _scope(request: web.Request) -> str:
        if "region" in request.match_info:
            return f"regions/{validation.require_region(request.match_info['region'])}"
        if "zone" in request.match_info:
            return f"zones/{request.match_info['zone']}"
        return "global"

    def _find(self, collection: str, project: str, scope: str, name: str) -> dict:
        resource = self._state.load_balancing[collection].get((project, scope, name))
        if resource is None:
            raise not_found(f"The resource 'projects/{project}/{scope}/{collection}/{name}' was not found")
        return resource

    def _list(self, collection: str):
        async def handle(request: web.Request) -> web.Response:
            project = self._compute._project(request)
            scope = self._scope(request)
            items = [
                r
                for (p, s, _), r in sorted(self._state.load_balancing[collection].items())
                if (p, s) == (project, scope)
            ]
            list_kind = COLLECTIONS[collection][2]
            return web.json_response(
                list_json(list_kind, f"projects/{project}/{scope}/{collection}", items, request)
            )

        return handle

    def _aggregated(self, collection: str):
        async def handle(request: web.Request) -> web.Response:
            project = self._compute._project(request)
            grouped: dict[str, dict] = {}
            for (p, scope, _), resource in sorted(self._state.load_balancing[collection].items()):
                if p == project:
                    grouped.setdefault(scope, {collection: []})[collection].append(resource)
            body = {
                "kind": AGGREGATED[collection],
                "id": f"projects/{project}/aggregated/{collection}",
                "selfLink": f"{SELF_LINK_BASE}projects/{project}/aggregated/{collection}",
                "items": grouped,
            }
            return web.json_response(body)

        return handle

    def _get(self, collection: str):
        async def handle(request: web.Request) -> web.Response:
            project = self._compute._project(request)
            return web.json_response(
                self._find(collection, project, self._scope(request), request.match_info["name"])
            )

        return handle

    def _delete(self, collection: str):
        async def action(request: web.Request, project: str):
            scope = self._scope(request)
            resource = self._find(collection, project, scope, request.match_info["name"])
            users = referrers(self._state, project, resource["selfLink"])
            if users:
                singular = COLLECTIONS[collection][1].removeprefix("compute#")
                path = resource["selfLink"].removeprefix(SELF_LINK_BASE)
                raise in_use(_snake(singular), path, f"'{users[0].removeprefix(SELF_LINK_BASE)}'")
            key = (project, scope, resource["name"])

            async def delete() -> None:
                await self._compute._simulate_work("delete", resource["name"], project)
                self._state.load_balancing[collection].pop(key, None)

            operation_scope = None if scope == "global" else scope
            return operation_scope, self._compute._start(
                project, operation_scope, "delete", resource["selfLink"], resource["id"], delete
            )

        return action


def _snake(kind: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in kind)


def _now() -> float:
    return time.time()
