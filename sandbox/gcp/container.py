"""Kubernetes Engine (Container) v1: Autopilot clusters and their operations.

A cluster is PROVISIONING for the profile's cluster_provisioning time, then the sandbox starts its
Kubernetes API and data plane and the cluster is RUNNING (or ERROR under the "cluster_error"
behaviour). Deleting makes it STOPPING, then gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time

from aiohttp import web
from google.cloud import container_v1
from google.protobuf import json_format

from sandbox.gcp import regions, validation
from sandbox.gcp.errors import GcpError, already_exists, bad_request, not_found
from sandbox.gcp.hosts import ContainerHost
from sandbox.gcp.operations import Operation, OperationRunner, new_operation_name, rfc3339
from sandbox.gcp.state import CONTAINER_SERVICE, GcpState

logger = logging.getLogger(__name__)

SELF_LINK_BASE = "https://container.googleapis.com/v1/"
_CLUSTER_NAME_MAX = 40
_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_GKE_VERSION = re.compile(r"\d+\.\d+\.\d+-gke\.\d+")
_VERSION_ALIAS = re.compile(r"\d+\.\d+(\.\d+)?")
_DEFAULT_CLUSTER_CIDR = "10.96.0.0/14"
_DEFAULT_SERVICES_CIDR = "34.118.224.0/20"


def cluster_key(project: str, location: str, name: str) -> str:
    return f"projects/{project}/locations/{location}/clusters/{name}"


class ContainerApi:
    def __init__(self, sandbox: ContainerHost, runner: OperationRunner) -> None:
        self._sandbox = sandbox
        self._state: GcpState = sandbox.gcp
        self._runner = runner
        self._operations: dict[tuple[str, str, str], Operation] = {}

    def routes(self) -> list[web.RouteDef]:
        location = "/v1/projects/{project}/locations/{location}"
        return [
            web.post(location + "/clusters", self.create_cluster),
            web.get(location + "/clusters", self.list_clusters),
            web.get(location + "/clusters/{cluster}", self.get_cluster),
            web.delete(location + "/clusters/{cluster}", self.delete_cluster),
            web.get(location + "/operations/{operation}", self.get_operation),
            web.get(location + "/serverConfig", self.get_server_config),
        ]

    def _project(self, request: web.Request):
        project = self._state.project(request.match_info["project"])
        project.require_enabled(CONTAINER_SERVICE)
        return project

    # --- clusters

    async def create_cluster(self, request: web.Request) -> web.Response:
        project = self._project(request)
        location = request.match_info["location"]
        region = validation.require_location(location)
        body = await validation.json_body(request)
        spec = _parse_cluster(body.get("cluster"))
        name = validation.require_rfc1035_name("cluster", spec.get("name"), max_length=_CLUSTER_NAME_MAX)
        key = (project.project_id, location, name)
        if key in self._state.clusters:
            raise already_exists(f"Already exists: {cluster_key(*key)}.")
        autopilot = bool(spec.get("autopilot", {}).get("enabled"))
        if autopilot and location != region:
            raise bad_request("Autopilot clusters must be regional clusters.")
        network, subnet = self._cluster_network(project.project_id, region, spec)
        ip_policy = _ip_allocation_policy(spec, subnet)
        cluster = self._new_cluster(
            project, location, region, name, spec, network, subnet, ip_policy, autopilot
        )
        self._state.clusters[key] = cluster
        operation = self._start(project, location, "CREATE_CLUSTER", cluster, self._provision(key, cluster))
        return web.json_response(self._operation_json(project.number, location, operation))

    async def get_cluster(self, request: web.Request) -> web.Response:
        project = self._project(request)
        return web.json_response(
            self._cluster(project.project_id, request.match_info["location"], request.match_info["cluster"])
        )

    async def list_clusters(self, request: web.Request) -> web.Response:
        project = self._project(request)
        location = request.match_info["location"]
        if location != "-":
            validation.require_location(location)
        clusters = [
            cluster
            for (cluster_project, cluster_location, _), cluster in sorted(self._state.clusters.items())
            if cluster_project == project.project_id and location in ("-", cluster_location)
        ]
        return web.json_response({"clusters": clusters} if clusters else {})

    async def delete_cluster(self, request: web.Request) -> web.Response:
        project = self._project(request)
        location = request.match_info["location"]
        cluster = self._cluster(project.project_id, location, request.match_info["cluster"])
        if cluster["status"] in ("PROVISIONING", "STOPPING", "RECONCILING"):
            raise GcpError(
                400,
                f"Cluster {cluster['name']} is running incompatible operation (status {cluster['status']}). "
                "Retry when it has finished.",
                status="FAILED_PRECONDITION",
            )
        key = (project.project_id, location, cluster["name"])
        cluster["status"] = "STOPPING"
        operation = self._start(project, location, "DELETE_CLUSTER", cluster, self._tear_down(key))
        return web.json_response(self._operation_json(project.number, location, operation))

    async def get_server_config(self, request: web.Request) -> web.Response:
        self._project(request)
        validation.require_location(request.match_info["location"])
        version = self._sandbox.gke_version
        channels = [
            {"channel": channel, "defaultVersion": version, "validVersions": [version]}
            for channel in ("RAPID", "REGULAR", "STABLE", "EXTENDED")
        ]
        return web.json_response(
            {
                "defaultClusterVersion": version,
                "validMasterVersions": [version],
                "validNodeVersions": [version],
                "defaultImageType": "COS_CONTAINERD",
                "validImageTypes": ["COS_CONTAINERD", "UBUNTU_CONTAINERD"],
                "channels": channels,
            }
        )

    def _cluster(self, project: str, location: str, name: str) -> dict:
        cluster = self._state.clusters.get((project, location, name))
        if cluster is None:
            raise not_found(f"Not found: {cluster_key(project, location, name)}.")
        return cluster

    def _cluster_network(self, project: str, region: str, spec: dict) -> tuple[dict, dict]:
        network_config = spec.get("networkConfig", {})
        network_ref = spec.get("network") or network_config.get("network") or "default"
        network_name = validation.last_segment(network_ref)
        network = self._state.networks.get((project, network_name))
        if network is None:
            raise bad_request(f'Network "{network_name}" does not exist.')
        subnet_ref = spec.get("subnetwork") or network_config.get("subnetwork")
        if not subnet_ref:
            raise bad_request(
                f'Network "{network_name}" is a custom-mode network: the cluster must name a subnetwork.'
            )
        subnet_name = validation.last_segment(subnet_ref)
        subnet = self._state.subnetworks.get((project, region, subnet_name))
        if subnet is None:
            raise bad_request(
                f'Subnetwork "projects/{project}/regions/{region}/subnetworks/{subnet_name}" does not exist.'
            )
        if validation.last_segment(subnet["network"]) != network_name:
            raise bad_request(f'Subnetwork "{subnet_name}" does not belong to network "{network_name}".')
        return network, subnet

    def _new_cluster(
        self, project, location, region, name, spec, network, subnet, ip_policy, autopilot
    ) -> dict:
        version = _resolve_version(spec.get("initialClusterVersion") or "-", self._sandbox.gke_version)
        labels = spec.get("resourceLabels", {})
        for label_key, label_value in labels.items():
            if not _LABEL.fullmatch(label_key) or not _LABEL_VALUE.fullmatch(str(label_value)):
                raise bad_request(
                    f"Invalid resource label {label_key}={label_value}: use lowercase letters, digits, _ and -."
                )
        network_path = f"projects/{project.project_id}/global/networks/{network['name']}"
        subnet_path = f"projects/{project.project_id}/regions/{region}/subnetworks/{subnet['name']}"
        cluster: dict = {
            "name": name,
            "description": spec.get("description", ""),
            "network": network["name"],
            "subnetwork": subnet["name"],
            "networkConfig": {
                "network": network_path,
                "subnetwork": subnet_path,
                "datapathProvider": "ADVANCED_DATAPATH",
                # Kept as asked, and answered on every read: NetworkConfig.gatewayApiConfig in
                # https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters#networkconfig
                **_gateway_api_config(spec),
            },
            "ipAllocationPolicy": ip_policy,
            "clusterIpv4Cidr": ip_policy["clusterIpv4CidrBlock"],
            "servicesIpv4Cidr": ip_policy["servicesIpv4CidrBlock"],
            "autopilot": {"enabled": autopilot},
            "releaseChannel": {"channel": spec.get("releaseChannel", {}).get("channel", "REGULAR")},
            "resourceLabels": dict(labels),
            "labelFingerprint": secrets.token_hex(4),
            "location": location,
            "zone": location,
            "locations": regions.zones_of(region) if location == region else [location],
            "selfLink": SELF_LINK_BASE + cluster_key(project.project_id, location, name),
            "id": secrets.token_hex(16),
            "initialClusterVersion": version,
            "currentMasterVersion": version,
            "currentNodeVersion": version,
            "createTime": rfc3339(time.time()),
            "status": "PROVISIONING",
            "etag": secrets.token_hex(8),
            "masterAuth": {},
            "loggingService": "logging.googleapis.com/kubernetes",
            "monitoringService": "monitoring.googleapis.com/kubernetes",
        }
        return cluster

    def _provision(self, key: tuple[str, str, str], cluster: dict):
        project, location, name = key

        async def provision() -> None:
            # The profile is read again while waiting, so a test can hold a cluster PROVISIONING
            # (a long time) and release it (zero) whenever its scenario is ready.
            started = time.monotonic()
            while (left := self._sandbox.profile.cluster_provisioning - (time.monotonic() - started)) > 0:
                await asyncio.sleep(min(left, 0.1))
            if self._sandbox.faults.behaviour(
                "operation_error", api="container", operation="CREATE_CLUSTER", resource=name, project=project
            ):
                self._state.clusters.pop(key, None)
                raise validation.injected_operation_failure("CREATE_CLUSTER", name)
            if self._sandbox.faults.behaviour(
                "cluster_error", project=project, location=location, cluster=name
            ):
                message = "Cluster creation failed: the control plane did not become healthy (injected by the sandbox)."
                cluster["status"] = "ERROR"
                cluster["statusMessage"] = message
                raise GcpError(500, message, status="INTERNAL")
            try:
                kube = await self._sandbox.start_kube_cluster(
                    project=project,
                    location=location,
                    name=name,
                    version=cluster["currentMasterVersion"],
                    network=cluster["network"],
                    subnetwork=cluster["subnetwork"],
                )
            except Exception as error:
                logger.exception("the Kubernetes API of cluster %s did not start", name)
                cluster["status"] = "ERROR"
                cluster["statusMessage"] = (
                    f"The sandbox could not start the control plane: {type(error).__name__}"
                )
                raise GcpError(500, cluster["statusMessage"], status="INTERNAL") from error
            cluster["endpoint"] = kube.endpoint
            cluster["masterAuth"] = {
                "clusterCaCertificate": base64.b64encode(self._sandbox.ca.ca_pem).decode()
            }
            cluster["currentNodeCount"] = 0
            cluster["status"] = "RUNNING"
            await self._sandbox.notify_cluster_running(cluster_key(*key))

        return provision

    def _tear_down(self, key: tuple[str, str, str]):
        async def tear_down() -> None:
            await asyncio.sleep(self._sandbox.profile.cluster_provisioning / 2)
            await self._sandbox.stop_kube_cluster(cluster_key(*key))
            self._state.clusters.pop(key, None)

        return tear_down

    # --- operations

    async def get_operation(self, request: web.Request) -> web.Response:
        project = self._project(request)
        location = request.match_info["location"]
        name = request.match_info["operation"]
        operation = self._operations.get((project.project_id, location, name))
        if operation is None:
            raise not_found(f"Not found: projects/{project.number}/locations/{location}/operations/{name}.")
        return web.json_response(self._operation_json(project.number, location, operation))

    def _start(self, project, location: str, operation_type: str, cluster: dict, work) -> Operation:
        target = f"{SELF_LINK_BASE}projects/{project.number}/locations/{location}/clusters/{cluster['name']}"
        operation = Operation(name=new_operation_name(), operation_type=operation_type, target=target)
        self._operations[(project.project_id, location, operation.name)] = operation
        self._runner.start(operation, work)
        return operation

    @staticmethod
    def _operation_json(project_number: str, location: str, operation: Operation) -> dict:
        body: dict = {
            "name": operation.name,
            "zone": location,
            "location": location,
            "operationType": operation.operation_type,
            "status": operation.status,
            "selfLink": f"{SELF_LINK_BASE}projects/{project_number}/locations/{location}/operations/{operation.name}",
            "targetLink": operation.target,
            "startTime": rfc3339(operation.start_time or operation.insert_time),
        }
        if operation.end_time is not None:
            body["endTime"] = rfc3339(operation.end_time)
        if operation.done and operation.error is not None:
            body["error"] = operation.error.rpc_status()
            body["statusMessage"] = operation.error.message
        return body


def _resolve_version(requested: str, default: str) -> str:
    """GKE's version selectors: "-"/"latest", an exact version, or a prefix alias such as "1.34"."""
    if requested in ("-", "latest"):
        return default
    if _GKE_VERSION.fullmatch(requested):
        return requested
    if _VERSION_ALIAS.fullmatch(requested) and default.startswith(requested + "."):
        return default
    raise bad_request(f'Version "{requested}" is invalid or not available in this location.')


def _parse_cluster(raw: object) -> dict:
    """The cluster of a create request, with enums as names whether the client sent names or numbers."""
    if not isinstance(raw, dict):
        raise bad_request("Invalid value for field 'cluster': a cluster object is required.")
    try:
        message = container_v1.Cluster.from_json(json.dumps(raw), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as error:
        raise bad_request(f"Invalid value for field 'cluster': {error}") from None
    return json_format.MessageToDict(container_v1.Cluster.pb(message))


def _ip_allocation_policy(spec: dict, subnet: dict) -> dict:
    requested = spec.get("ipAllocationPolicy", {})
    secondary = {r["rangeName"]: r["ipCidrRange"] for r in subnet.get("secondaryIpRanges", [])}
    policy = {"useIpAliases": True, "stackType": requested.get("stackType", "IPV4")}
    for field, default in (
        ("clusterSecondaryRangeName", _DEFAULT_CLUSTER_CIDR),
        ("servicesSecondaryRangeName", _DEFAULT_SERVICES_CIDR),
    ):
        range_name = requested.get(field)
        block_field = "clusterIpv4CidrBlock" if field.startswith("cluster") else "servicesIpv4CidrBlock"
        if range_name:
            if range_name not in secondary:
                raise bad_request(
                    f'Invalid value for ipAllocationPolicy.{field}: secondary range "{range_name}" not found in '
                    f'subnetwork "{subnet["name"]}".'
                )
            policy[field] = range_name
            policy[block_field] = secondary[range_name]
        else:
            policy[block_field] = default
    policy["clusterIpv4Cidr"] = policy["clusterIpv4CidrBlock"]
    policy["servicesIpv4Cidr"] = policy["servicesIpv4CidrBlock"]
    return policy


def _gateway_api_config(spec: dict) -> dict:
    asked = (spec.get("networkConfig") or {}).get("gatewayApiConfig")
    return {"gatewayApiConfig": dict(asked)} if asked else {}
