"""The load balancer GKE's Gateway controller builds for a Gateway: find it in Compute, delete it.

GKE names a Gateway's frontend resources ``gkegw1-<cluster hash>-<namespace>-<gateway>-<hash>``
(forwarding rule, address, target proxy, URL map), its backends ``gkegw1-<cluster hash>-<namespace>-
<backend>-<port>-<hash>`` (backend services and health checks), its NEGs ``k8s1-<cluster>-<namespace>-
<service>-<port>-<hash>`` and one firewall per cluster and VPC, ``gkegw1-<cluster hash>-l7-<network>-
<scope>``; names over 63 characters are cut field by field. (The names as ``kubectl describe
gateway`` lists them in its ``networking.gke.io/*`` annotations on GKE.) What proves a resource is this
Gateway's: a frontend named for this namespace and Gateway on this VPC and region; what that frontend
references (target proxy -> URL map -> backend services -> health checks and NEGs); backends and
the firewall carrying the same cluster hash in this namespace or VPC. Anything else is left alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from gke_inference.hooks._base import compute_v1_on_demand
from gke_inference.hooks._retry import DEFAULT_RETRY
from gke_inference.hooks.compute_network import ComputeNetworkHook

compute_v1 = compute_v1_on_demand()

NAME_LIMIT = 63
_GKEGW = re.compile(r"gkegw1-([a-z0-9]{4})-(.+)-([a-z0-9]{12})")
_FIREWALL = re.compile(r"gkegw1-([a-z0-9]{4})-l7-(.+)")
# Users before what they use: Compute refuses to delete a resource something still references.
DELETE_ORDER = (
    "forwardingRules",
    "addresses",
    "targetHttpProxies",
    "urlMaps",
    "backendServices",
    "healthChecks",
    "networkEndpointGroups",
    "firewalls",
)
FRONTEND = ("forwardingRules", "addresses", "targetHttpProxies", "urlMaps")
MANAGED_SCHEMES = ("EXTERNAL_MANAGED", "INTERNAL_MANAGED")


@dataclass(frozen=True)
class LbResource:
    """One Compute resource, reduced to what ownership and ordering need."""

    collection: str
    scope: str  # "regions/R", "zones/Z" or "global"
    name: str
    self_link: str
    network: str = ""
    subnetwork: str = ""
    scheme: str = ""
    refs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.scope}/{self.collection}/{self.name}"


@dataclass
class GatewayLeftovers:
    """This Gateway's resources, in delete order, and what else would block the VPC's deletion."""

    resources: list[LbResource] = field(default_factory=list)
    blockers: list[LbResource] = field(default_factory=list)

    @property
    def frontend(self) -> list[LbResource]:
        return [r for r in self.resources if r.collection in FRONTEND]


def names_gateway(middle: str, namespace: str, gateway: str, full_name: str) -> bool:
    """Whether ``<middle>`` of a gkegw1 name is ``<namespace>-<gateway>``, or its cut form when the
    whole name reached GKE's 63 characters."""
    if middle == f"{namespace}-{gateway}":
        return True
    if len(full_name) < NAME_LIMIT:
        return False
    return any(
        middle[i] == "-" and namespace.startswith(middle[:i]) and gateway.startswith(middle[i + 1 :])
        for i in range(1, len(middle) - 1)
    )


def in_namespace(middle: str, namespace: str, full_name: str) -> bool:
    """Whether a backend's ``<namespace>-<backend>-<port>`` starts with this namespace (or its cut form)."""
    if middle.startswith(f"{namespace}-"):
        return True
    head = middle.split("-", 1)[0]
    return len(full_name) >= NAME_LIMIT and namespace.startswith(head) and len(head) >= 3


def find_gateway_leftovers(
    resources: Iterable[LbResource],
    *,
    namespace: str,
    gateway: str,
    network_link: str,
    region: str,
    owned_subnet_links: Iterable[str] = (),
    network_owned: bool = False,
) -> GatewayLeftovers:
    """Split the project's load-balancer resources into this Gateway's and the blockers."""
    everything = list(resources)
    by_link = {r.self_link: r for r in everything}
    region_scope = f"regions/{region}"

    def names_this_gateway(resource: LbResource) -> re.Match | None:
        match = _GKEGW.fullmatch(resource.name)
        if (
            resource.collection in FRONTEND
            and resource.scope == region_scope
            and match
            and names_gateway(match.group(2), namespace, gateway, resource.name)
        ):
            return match
        return None

    # Only a resource on our VPC proves it is ours: another environment in the project may have a
    # Gateway of the same namespace and name, and its addresses, proxies and URL maps name no VPC.
    mine: dict[str, LbResource] = {}
    hashes: set[str] = set()
    for resource in everything:
        match = names_this_gateway(resource)
        if match and resource.network == network_link:
            mine[resource.self_link] = resource
            hashes.add(match.group(1))
    _follow_references(mine, by_link)
    network_name = network_link.rsplit("/", 1)[-1]
    firewalls = [
        r
        for r in everything
        if r.collection == "firewalls"
        and r.network == network_link
        and (m := _FIREWALL.fullmatch(r.name))
        and m.group(2).startswith(f"{network_name}-")
    ]
    other_frontend_hashes = {
        m.group(1)
        for r in everything
        if r.collection == "forwardingRules"
        and r.self_link not in mine
        and r.network == network_link
        and (m := _GKEGW.fullmatch(r.name))
    }
    for firewall in firewalls:
        cluster_hash = _FIREWALL.fullmatch(firewall.name).group(1)
        if cluster_hash in hashes or cluster_hash not in other_frontend_hashes:
            mine[firewall.self_link] = firewall
            hashes.add(cluster_hash)
    # Frontends that name no VPC (an external address, a proxy or URL map whose forwarding rule an
    # interrupted teardown already deleted): ours when they carry our cluster's hash.
    for resource in everything:
        match = names_this_gateway(resource)
        if (
            match
            and not resource.network
            and match.group(1) in hashes
            and not _used_outside(resource, everything, mine)
        ):
            mine[resource.self_link] = resource
    # Backends an interrupted teardown left without their URL map: same cluster hash, this namespace.
    for resource in everything:
        match = _GKEGW.fullmatch(resource.name)
        if (
            resource.collection in ("backendServices", "healthChecks")
            and resource.scope == region_scope
            and match
            and match.group(1) in hashes
            and in_namespace(match.group(2), namespace, resource.name)
            and not _used_outside(resource, everything, mine)
        ):
            mine[resource.self_link] = resource
    _follow_references(mine, by_link)
    for resource in everything:
        parts = resource.name.split("-")
        if (
            resource.collection == "networkEndpointGroups"
            and resource.network == network_link
            and resource.scope.startswith(f"zones/{region}-")
            and len(parts) > 3
            and parts[0] == "k8s1"
            and in_namespace("-".join(parts[2:]), namespace, resource.name)
            and hashes
            and not _used_outside(resource, everything, mine)
        ):
            mine[resource.self_link] = resource
    ordered = sorted(mine.values(), key=lambda r: (DELETE_ORDER.index(r.collection), r.scope, r.name))
    blockers = _blockers(everything, mine, set(owned_subnet_links), network_link, network_owned)
    return GatewayLeftovers(ordered, blockers)


def _follow_references(mine: dict[str, LbResource], by_link: dict[str, LbResource]) -> None:
    """Add what `mine` references: forwarding rule -> proxy -> URL map -> backend services -> checks, NEGs."""
    pending = list(mine.values())
    while pending:
        for link in pending.pop().refs:
            target = by_link.get(link)
            if target is not None and target.self_link not in mine:
                mine[link] = target
                pending.append(target)


def _used_outside(resource: LbResource, everything: list[LbResource], mine: dict[str, LbResource]) -> bool:
    return any(resource.self_link in r.refs and r.self_link not in mine for r in everything)


def _blockers(
    everything: list[LbResource],
    mine: dict[str, LbResource],
    subnets: set[str],
    network_link: str,
    network_owned: bool,
) -> list[LbResource]:
    """Resources that are not this Gateway's but keep one of the DAG's subnets or its VPC in use."""
    found = []
    for resource in everything:
        if resource.self_link in mine:
            continue
        uses_subnet = resource.subnetwork in subnets
        uses_proxy_subnet = (
            resource.collection == "forwardingRules"
            and resource.scheme in MANAGED_SCHEMES
            and resource.network == network_link
            and bool(subnets)
        )
        uses_network = network_owned and resource.network == network_link
        if uses_subnet or uses_proxy_subnet or uses_network:
            found.append(resource)
    return sorted(found, key=str)


def _scope_of(self_link: str) -> str:
    match = re.search(r"/projects/[^/]+/((?:regions|zones)/[^/]+|global)/", self_link)
    return match.group(1) if match else "global"


def _to_resource(collection: str, item) -> LbResource:  # noqa: ANN001 - a compute_v1 message
    refs: list[str] = []
    network = subnetwork = scheme = ""
    if collection == "forwardingRules":
        refs = [item.target] if item.target else []
        network, subnetwork, scheme = item.network, item.subnetwork, item.load_balancing_scheme
    elif collection == "targetHttpProxies":
        refs = [item.url_map]
    elif collection == "urlMaps":
        refs = [item.default_service] + [
            link
            for matcher in item.path_matchers
            for link in [matcher.default_service, *(rule.service for rule in matcher.path_rules)]
        ]
    elif collection == "backendServices":
        refs = list(item.health_checks) + [backend.group for backend in item.backends]
        scheme = item.load_balancing_scheme
    elif collection in ("addresses", "networkEndpointGroups"):
        network, subnetwork = item.network, item.subnetwork
    elif collection == "firewalls":
        network = item.network
    return LbResource(
        collection=collection,
        scope=_scope_of(item.self_link),
        name=item.name,
        self_link=item.self_link,
        network=network,
        subnetwork=subnetwork,
        scheme=scheme,
        refs=tuple(r for r in refs if r),
    )


class LoadBalancerHook(ComputeNetworkHook):
    """List and delete the regional load-balancer resources of a project (and its NEGs and firewalls)."""

    @cached_property
    def clients(self) -> dict[str, object]:
        kwargs = self.client_kwargs()
        classes = {
            "forwardingRules": compute_v1.ForwardingRulesClient,
            "addresses": compute_v1.AddressesClient,
            "targetHttpProxies": compute_v1.RegionTargetHttpProxiesClient,
            "urlMaps": compute_v1.RegionUrlMapsClient,
            "backendServices": compute_v1.RegionBackendServicesClient,
            "healthChecks": compute_v1.RegionHealthChecksClient,
            "networkEndpointGroups": compute_v1.NetworkEndpointGroupsClient,
            "firewalls": compute_v1.FirewallsClient,
        }
        return {collection: self.named_client(cls(**kwargs)) for collection, cls in classes.items()}

    def network_link(self, name: str, project_id: str | None = None) -> str:
        """The VPC's self link (resources name their network by it), also once the VPC is gone."""
        project = self.resolve_project_id(project_id)
        network = self.find_network(name, project)
        if network is not None:
            return network.self_link
        return f"https://www.googleapis.com/compute/v1/projects/{project}/global/networks/{name}"

    def inventory(self, region: str, project_id: str | None = None) -> list[LbResource]:
        """Every load-balancer resource of the region, its zones' NEGs and the project's firewalls."""
        project = self.resolve_project_id(project_id)
        call = {"retry": DEFAULT_RETRY, "timeout": self.request_timeout}
        found: list[LbResource] = []
        for collection in ("forwardingRules", "addresses", "targetHttpProxies", "urlMaps", "backendServices"):
            pager = self.clients[collection].list(project=project, region=region, **call)
            found += [_to_resource(collection, item) for item in pager]
        pager = self.clients["healthChecks"].list(project=project, region=region, **call)
        found += [_to_resource("healthChecks", item) for item in pager]
        pager = self.clients["networkEndpointGroups"].aggregated_list(project=project, **call)
        for scope, scoped in pager:
            if scope.startswith(f"zones/{region}-"):
                found += [
                    _to_resource("networkEndpointGroups", item) for item in scoped.network_endpoint_groups
                ]
        pager = self.clients["firewalls"].list(project=project, **call)
        found += [_to_resource("firewalls", item) for item in pager]
        return found

    def delete_resource(self, resource: LbResource, project_id: str | None = None) -> bool:
        """Delete one resource and wait; ``False`` when it was already gone."""
        project = self.resolve_project_id(project_id)
        kind, _, where = resource.scope.partition("/")
        request = _delete_request(resource, project, where)
        operation = self._delete(self.clients[resource.collection], request, str(resource))
        if operation is None:
            return False
        self.wait_for_operation(
            operation,
            project,
            region=where if kind == "regions" else None,
            zone=where if kind == "zones" else None,
        )
        return True


def _delete_request(resource: LbResource, project: str, where: str):
    request_id = str(uuid.uuid4())
    name = resource.name
    if resource.collection == "forwardingRules":
        return compute_v1.DeleteForwardingRuleRequest(
            project=project, region=where, forwarding_rule=name, request_id=request_id
        )
    if resource.collection == "addresses":
        return compute_v1.DeleteAddressRequest(
            project=project, region=where, address=name, request_id=request_id
        )
    if resource.collection == "targetHttpProxies":
        return compute_v1.DeleteRegionTargetHttpProxyRequest(
            project=project, region=where, target_http_proxy=name, request_id=request_id
        )
    if resource.collection == "urlMaps":
        return compute_v1.DeleteRegionUrlMapRequest(
            project=project, region=where, url_map=name, request_id=request_id
        )
    if resource.collection == "backendServices":
        return compute_v1.DeleteRegionBackendServiceRequest(
            project=project, region=where, backend_service=name, request_id=request_id
        )
    if resource.collection == "healthChecks":
        return compute_v1.DeleteRegionHealthCheckRequest(
            project=project, region=where, health_check=name, request_id=request_id
        )
    if resource.collection == "networkEndpointGroups":
        return compute_v1.DeleteNetworkEndpointGroupRequest(
            project=project, zone=where, network_endpoint_group=name, request_id=request_id
        )
    return compute_v1.DeleteFirewallRequest(project=project, firewall=name, request_id=request_id)
