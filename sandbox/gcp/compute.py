"""Compute Engine v1: VPC networks, subnetworks, the Gateway load balancers' resources
(sandbox.gcp.loadbalancers), and global/regional/zonal operations."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import secrets
import time
import uuid

from aiohttp import web

from sandbox.gcp import validation
from sandbox.gcp.errors import GcpError, already_exists, bad_request, in_use, not_found
from sandbox.gcp.hosts import ComputeHost
from sandbox.gcp.listing import SELF_LINK_BASE, list_json
from sandbox.gcp.loadbalancers import LoadBalancerApi, referrers, subnetwork_users
from sandbox.gcp.operations import (
    Operation,
    OperationRunner,
    new_numeric_id,
    new_operation_name,
    rfc3339,
    wait_until_done,
)
from sandbox.gcp.state import COMPUTE_SERVICE, GcpState

_ROUTING_MODES = ("REGIONAL", "GLOBAL")
_PROXY_PURPOSES = ("REGIONAL_MANAGED_PROXY", "GLOBAL_MANAGED_PROXY")
_PURPOSES = ("PRIVATE", "PRIVATE_RFC_1918", "PRIVATE_SERVICE_CONNECT", *_PROXY_PURPOSES)
_ROLES = ("ACTIVE", "BACKUP")
# operations.wait returns after at most two minutes, done or not (as documented for Compute).
_WAIT_LIMIT_SECONDS = 120.0


class ComputeApi:
    def __init__(self, sandbox: ComputeHost, runner: OperationRunner) -> None:
        self._sandbox = sandbox
        self._state: GcpState = sandbox.gcp
        self._runner = runner
        self._operations: dict[tuple[str, str, str], Operation] = {}
        self._operations_by_request_id: dict[tuple[str, str], tuple[str | None, Operation]] = {}
        # Names and ranges claimed by inserts whose operations have not finished yet.
        self._pending_networks: set[tuple[str, str]] = set()
        self._pending_subnetworks: dict[tuple[str, str, str], dict] = {}

    def routes(self) -> list[web.RouteDef]:
        project = "/compute/v1/projects/{project}"
        networks = project + "/global/networks"
        subnetworks = project + "/regions/{region}/subnetworks"
        return [
            web.post(networks, self._mutation(self.insert_network)),
            web.get(networks, self.list_networks),
            web.get(networks + "/{network}", self.get_network),
            web.delete(networks + "/{network}", self._mutation(self.delete_network)),
            web.post(subnetworks, self._mutation(self.insert_subnetwork)),
            web.get(subnetworks, self.list_subnetworks),
            web.get(subnetworks + "/{subnetwork}", self.get_subnetwork),
            web.delete(subnetworks + "/{subnetwork}", self._mutation(self.delete_subnetwork)),
            web.get(project + "/global/operations/{operation}", self.get_operation),
            web.post(project + "/global/operations/{operation}/wait", self.wait_operation),
            web.get(project + "/regions/{region}/operations/{operation}", self.get_operation),
            web.post(project + "/regions/{region}/operations/{operation}/wait", self.wait_operation),
            web.get(project + "/zones/{zone}/operations/{operation}", self.get_operation),
            web.post(project + "/zones/{zone}/operations/{operation}/wait", self.wait_operation),
            *LoadBalancerApi(self).routes(),
        ]

    def _mutation(self, action):
        """Run a create/delete; a repeated `requestId` gets the first call's operation back, as on GCP."""

        async def handle(request: web.Request) -> web.Response:
            project = self._project(request)
            request_id = request.query.get("requestId")
            if request_id is not None:
                _require_uuid(request_id)
                earlier = self._operations_by_request_id.get((project, request_id))
                if earlier is not None:
                    return web.json_response(self._operation_json(project, *earlier))
            region, operation = await action(request, project)
            if request_id is not None:
                self._operations_by_request_id[(project, request_id)] = (region, operation)
            return web.json_response(self._operation_json(project, region, operation))

        return handle

    def _project(self, request: web.Request) -> str:
        project = self._state.project(request.match_info["project"])
        project.require_enabled(COMPUTE_SERVICE)
        return project.project_id

    # --- networks

    async def insert_network(self, request: web.Request, project: str) -> tuple[str | None, Operation]:
        body = await validation.json_body(request)
        name = validation.require_rfc1035_name("network", body.get("name"))
        if body.get("autoCreateSubnetworks") is not False:
            raise bad_request(
                "Invalid value for field 'resource.autoCreateSubnetworks': the sandbox creates VPC networks "
                "in custom subnet mode only; set autoCreateSubnetworks to false."
            )
        routing_mode = (body.get("routingConfig") or {}).get("routingMode", "REGIONAL")
        if routing_mode not in _ROUTING_MODES:
            raise bad_request(
                f"Invalid value for field 'resource.routingConfig.routingMode': '{routing_mode}'."
            )
        key = (project, name)
        self_link = f"{SELF_LINK_BASE}projects/{project}/global/networks/{name}"
        if key in self._state.networks or key in self._pending_networks:
            raise already_exists(f"The resource 'projects/{project}/global/networks/{name}' already exists")
        network_id = new_numeric_id()
        network = {
            "kind": "compute#network",
            "id": network_id,
            "creationTimestamp": _now(),
            "name": name,
            "description": body.get("description", ""),
            "selfLink": self_link,
            "selfLinkWithId": f"{SELF_LINK_BASE}projects/{project}/global/networks/{network_id}",
            "autoCreateSubnetworks": False,
            "subnetworks": [],
            "routingConfig": {"routingMode": routing_mode},
            "mtu": int(body.get("mtu", 1460)),
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
        }
        self._pending_networks.add(key)

        async def create() -> None:
            try:
                await self._simulate_work("insert", name, project)
                self._state.networks[key] = network
            finally:
                self._pending_networks.discard(key)

        return None, self._start(project, None, "insert", self_link, network_id, create)

    async def get_network(self, request: web.Request) -> web.Response:
        project = self._project(request)
        return web.json_response(self._network(project, request.match_info["network"]))

    async def list_networks(self, request: web.Request) -> web.Response:
        project = self._project(request)
        networks = [self._network(p, name) for (p, name) in sorted(self._state.networks) if p == project]
        return web.json_response(
            list_json("compute#networkList", f"projects/{project}/global/networks", networks, request)
        )

    async def delete_network(self, request: web.Request, project: str) -> tuple[str | None, Operation]:
        network = self._network(project, request.match_info["network"])
        name = network["name"]
        users = [s["selfLink"] for s in self._state.subnetworks_of(project, name)]
        users += referrers(self._state, project, network["selfLink"])
        if users:
            # e.g. "The network resource '.../networks/ml-vpc-dev' is already being used by
            # '.../firewalls/gkegw1-XXXX-l7-ml-vpc-dev-global'" (GoogleCloudPlatform accelerated-platforms,
            # "Cleanup resources errors").
            path = f"projects/{project}/global/networks/{name}"
            raise in_use("network", path, f"'{users[0].removeprefix(SELF_LINK_BASE)}'")

        async def delete() -> None:
            await self._simulate_work("delete", name, project)
            self._state.networks.pop((project, name), None)

        return None, self._start(project, None, "delete", network["selfLink"], network["id"], delete)

    def _network(self, project: str, name: str) -> dict:
        network = self._state.networks.get((project, name))
        if network is None:
            raise not_found(f"The resource 'projects/{project}/global/networks/{name}' was not found")
        network = dict(network)
        network["subnetworks"] = [s["selfLink"] for s in self._state.subnetworks_of(project, name)]
        return network

    # --- subnetworks

    async def insert_subnetwork(self, request: web.Request, project: str) -> tuple[str | None, Operation]:
        region = validation.require_region(request.match_info["region"])
        body = await validation.json_body(request)
        name = validation.require_rfc1035_name("subnetwork", body.get("name"))
        key = (project, region, name)
        if key in self._state.subnetworks or key in self._pending_subnetworks:
            raise already_exists(
                f"The resource 'projects/{project}/regions/{region}/subnetworks/{name}' already exists"
            )
        network = self._subnet_network(project, body.get("network"))
        subnet = self._new_subnetwork(project, region, name, network, body)
        self._check_ranges_free(project, network["name"], subnet)
        self._check_single_active_proxy(project, region, network["name"], subnet)
        self._pending_subnetworks[key] = subnet

        async def create() -> None:
            try:
                await self._simulate_work("insert", name, project)
                self._state.subnetworks[key] = subnet
            finally:
                self._pending_subnetworks.pop(key, None)

        return region, self._start(project, region, "insert", subnet["selfLink"], subnet["id"], create)

    async def get_subnetwork(self, request: web.Request) -> web.Response:
        project = self._project(request)
        return web.json_response(
            self._subnetwork(project, request.match_info["region"], request.match_info["subnetwork"])
        )

    async def list_subnetworks(self, request: web.Request) -> web.Response:
        project = self._project(request)
        region = validation.require_region(request.match_info["region"])
        subnets = [
            s for (p, r, _), s in sorted(self._state.subnetworks.items()) if (p, r) == (project, region)
        ]
        return web.json_response(
            list_json(
                "compute#subnetworkList", f"projects/{project}/regions/{region}/subnetworks", subnets, request
            )
        )

    async def delete_subnetwork(self, request: web.Request, project: str) -> tuple[str | None, Operation]:
        region = request.match_info["region"]
        subnet = self._subnetwork(project, region, request.match_info["subnetwork"])
        name = subnet["name"]
        path = f"projects/{project}/regions/{region}/subnetworks/{name}"
        for cluster in self._state.clusters.values():
            if cluster.get("networkConfig", {}).get("subnetwork", "") == path:
                raise in_use("subnetwork", path, f"GKE cluster '{cluster['name']}'")
        users = subnetwork_users(self._state, project, subnet)
        if users:
            raise in_use("subnetwork", path, f"'{users[0].removeprefix(SELF_LINK_BASE)}'")

        async def delete() -> None:
            await self._simulate_work("delete", name, project)
            self._state.subnetworks.pop((project, region, name), None)

        return region, self._start(project, region, "delete", subnet["selfLink"], subnet["id"], delete)

    def _subnetwork(self, project: str, region: str, name: str) -> dict:
        subnet = self._state.subnetworks.get((project, region, name))
        if subnet is None:
            raise not_found(
                f"The resource 'projects/{project}/regions/{region}/subnetworks/{name}' was not found"
            )
        return subnet

    def _subnet_network(self, project: str, reference: object) -> dict:
        if not isinstance(reference, str) or not reference:
            raise bad_request("Invalid value for field 'resource.network': ''. The network must be set.")
        match = re.search(r"projects/([^/]+)/global/networks/([^/]+)$", reference)
        network_project, name = match.groups() if match else (project, validation.last_segment(reference))
        network = self._state.networks.get((network_project, name))
        if network is None:
            raise bad_request(
                f"Invalid value for field 'resource.network': '{reference}'. The referenced network resource "
                "cannot be found."
            )
        return network

    def _new_subnetwork(self, project: str, region: str, name: str, network: dict, body: dict) -> dict:
        cidr = validation.require_cidr("resource.ipCidrRange", body.get("ipCidrRange"))
        purpose = body.get("purpose", "PRIVATE")
        if purpose not in _PURPOSES:
            raise bad_request(f"Invalid value for field 'resource.purpose': '{purpose}'.")
        role = body.get("role")
        # Proxy-only subnets need a primary range of /26 or larger (64 addresses; /23 advised):
        # https://cloud.google.com/load-balancing/docs/proxy-only-subnets (planning the subnet's size).
        if purpose in _PROXY_PURPOSES and cidr.prefixlen > 26:
            raise bad_request(
                f"Invalid value for field 'resource.ipCidrRange': '{cidr}'. A {purpose} subnetwork must "
                "be /26 or larger."
            )
        if purpose in _PROXY_PURPOSES:
            if role not in _ROLES:
                raise bad_request(
                    f"Invalid value for field 'resource.role': '{role}'. A {purpose} subnetwork needs role "
                    "ACTIVE or BACKUP."
                )
        elif role is not None:
            raise bad_request(
                f"Invalid value for field 'resource.role': '{role}'. Only proxy subnetworks have a role."
            )
        secondary_ranges = self._secondary_ranges(body.get("secondaryIpRanges") or [], purpose)
        subnet_id = new_numeric_id()
        subnet = {
            "kind": "compute#subnetwork",
            "id": subnet_id,
            "creationTimestamp": _now(),
            "name": name,
            "description": body.get("description", ""),
            "network": network["selfLink"],
            "ipCidrRange": str(cidr),
            "region": f"{SELF_LINK_BASE}projects/{project}/regions/{region}",
            "selfLink": f"{SELF_LINK_BASE}projects/{project}/regions/{region}/subnetworks/{name}",
            "privateIpGoogleAccess": bool(body.get("privateIpGoogleAccess", False)),
            "fingerprint": base64.b64encode(secrets.token_bytes(8)).decode(),
            "purpose": purpose,
            "stackType": "IPV4_ONLY",
            "state": "READY",
        }
        if purpose in _PROXY_PURPOSES:
            subnet["role"] = role
        else:
            subnet["gatewayAddress"] = str(cidr.network_address + 1)
        if secondary_ranges:
            subnet["secondaryIpRanges"] = secondary_ranges
        return subnet

    @staticmethod
    def _secondary_ranges(ranges: object, purpose: str) -> list[dict]:
        if not isinstance(ranges, list):
            raise bad_request("Invalid value for field 'resource.secondaryIpRanges': must be a list.")
        if ranges and purpose in _PROXY_PURPOSES:
            raise bad_request(
                "Invalid value for field 'resource.secondaryIpRanges': proxy-only subnetworks "
                "cannot have secondary ranges."
            )
        parsed: list[dict] = []
        for index, entry in enumerate(ranges):
            field = f"resource.secondaryIpRanges[{index}]"
            if not isinstance(entry, dict):
                raise bad_request(f"Invalid value for field '{field}': must be an object.")
            range_name = validation.require_rfc1035_name("secondary range", entry.get("rangeName"))
            if any(existing["rangeName"] == range_name for existing in parsed):
                raise bad_request(
                    f"Invalid value for field '{field}.rangeName': '{range_name}' is used twice."
                )
            cidr = validation.require_cidr(f"{field}.ipCidrRange", entry.get("ipCidrRange"))
            parsed.append({"rangeName": range_name, "ipCidrRange": str(cidr)})
        return parsed

    def _check_ranges_free(self, project: str, network_name: str, subnet: dict) -> None:
        """Primary and secondary ranges may not overlap anywhere in the VPC (or each other)."""
        taken: list[tuple[ipaddress.IPv4Network, str]] = []
        others = self._state.subnetworks_of(project, network_name) + [
            s
            for (p, _, _), s in self._pending_subnetworks.items()
            if p == project and validation.last_segment(s["network"]) == network_name
        ]
        for other in others:
            for label, cidr in _ranges_of(other):
                taken.append((cidr, f"{other['name']} ({label})"))
        for label, cidr in _ranges_of(subnet):
            for other_cidr, owner in taken:
                if cidr.overlaps(other_cidr):
                    raise bad_request(
                        f"Invalid IPCidrRange: {cidr} conflicts with existing subnetwork '{owner}' range "
                        f"{other_cidr} in network '{network_name}'."
                    )
            taken.append((cidr, f"{subnet['name']} ({label})"))

    def _check_single_active_proxy(self, project: str, region: str, network_name: str, subnet: dict) -> None:
        if (subnet.get("purpose"), subnet.get("role")) != ("REGIONAL_MANAGED_PROXY", "ACTIVE"):
            return
        pending = [
            other
            for (p, r, _), other in self._pending_subnetworks.items()
            if (p, r) == (project, region)
            and validation.last_segment(other["network"]) == network_name
            and (other.get("purpose"), other.get("role")) == ("REGIONAL_MANAGED_PROXY", "ACTIVE")
        ]
        if pending or self._state.proxy_only_subnet_active(project, region, network_name):
            raise bad_request(
                f"Invalid resource usage: there is already an ACTIVE REGIONAL_MANAGED_PROXY subnetwork in "
                f"region {region} of network '{network_name}'."
            )

    # --- operations

    async def get_operation(self, request: web.Request) -> web.Response:
        project, region, operation = self._operation(request)
        return web.json_response(self._operation_json(project, region, operation))

    async def wait_operation(self, request: web.Request) -> web.Response:
        project, region, operation = self._operation(request)
        await wait_until_done(operation, _WAIT_LIMIT_SECONDS)
        return web.json_response(self._operation_json(project, region, operation))

    def _operation(self, request: web.Request) -> tuple[str, str, Operation]:
        project = self._project(request)
        if "zone" in request.match_info:
            scope = f"zones/{request.match_info['zone']}"
        else:
            scope = _scope_of(request.match_info.get("region"))
        name = request.match_info["operation"]
        operation = self._operations.get((project, scope, name))
        if operation is None:
            raise not_found(f"The resource 'projects/{project}/{scope}/operations/{name}' was not found")
        return project, scope, operation

    def _start(
        self, project: str, region: str | None, kind: str, target_link: str, target_id: str, work
    ) -> Operation:
        operation = Operation(
            name=new_operation_name(), operation_type=kind, target=target_link, target_id=target_id
        )
        self._operations[(project, _scope_of(region), operation.name)] = operation
        self._runner.start(operation, work)
        return operation

    async def _simulate_work(self, operation_type: str, name: str, project: str) -> None:
        await asyncio.sleep(self._sandbox.profile.operation)
        if self._sandbox.faults.behaviour(
            "operation_error", api="compute", operation=operation_type, resource=name, project=project
        ):
            raise validation.injected_operation_failure(operation_type, name)

    def _operation_json(self, project: str, region: str | None, operation: Operation) -> dict:
        """`region` is a region name, a "regions/R" or "zones/Z" scope, or None for global."""
        where = _scope_of(region)
        scope = f"projects/{project}/{where}"
        body: dict = {
            "kind": "compute#operation",
            "id": operation.id,
            "name": operation.name,
            "operationType": operation.operation_type,
            "targetLink": operation.target,
            "targetId": operation.target_id,
            "status": operation.status,
            "user": self._sandbox.service_account_email,
            "progress": 100 if operation.done else 0,
            "insertTime": rfc3339(operation.insert_time),
            "selfLink": f"{SELF_LINK_BASE}{scope}/operations/{operation.name}",
        }
        if where != "global":
            field = "zone" if where.startswith("zones/") else "region"
            body[field] = f"{SELF_LINK_BASE}projects/{project}/{where}"
        if operation.start_time is not None:
            body["startTime"] = rfc3339(operation.start_time)
        if operation.end_time is not None:
            body["endTime"] = rfc3339(operation.end_time)
        if operation.done and operation.error is not None:
            error = operation.error
            body["error"] = {"errors": [{"code": _compute_error_code(error), "message": error.message}]}
            body["httpErrorStatusCode"] = error.code
            body["httpErrorMessage"] = error.status.replace("_", " ")
        return body


def _scope_of(region: str | None) -> str:
    """An operation's scope: "global", "regions/R" or "zones/Z" (a bare name is a region)."""
    if not region or region == "global":
        return "global"
    return region if "/" in region else f"regions/{region}"


def _require_uuid(request_id: str) -> None:
    try:
        parsed = uuid.UUID(request_id)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise bad_request(f"Invalid value for field 'requestId': '{request_id}'. It must be a non-zero UUID.")


def _compute_error_code(error: GcpError) -> str:
    return {"quotaExceeded": "QUOTA_EXCEEDED", "alreadyExists": "RESOURCE_ALREADY_EXISTS"}.get(
        error.reason, error.status
    )


def _ranges_of(subnet: dict):
    yield "primary", ipaddress.IPv4Network(subnet["ipCidrRange"])
    for secondary in subnet.get("secondaryIpRanges", []):
        yield secondary["rangeName"], ipaddress.IPv4Network(secondary["ipCidrRange"])


def _now() -> str:
    return rfc3339(time.time())
