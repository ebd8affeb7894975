"""GKE cluster hook: the Container API over REST, with our retry policy and honest operation waits.

We do not reuse the provider's ``GKEHook``: it builds a gRPC client that ignores custom endpoints,
sleeps 15 s per poll, and ``wait_for_operation`` reports an operation that ended in error as success.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

from google.api_core import exceptions as api_exceptions
from google.cloud import container_v1

from gke_inference.hooks._base import EndpointAwareGoogleHook
from gke_inference.hooks._errors import InvalidInputError, OperationFailedError, ResourceMismatchError
from gke_inference.hooks._operations import DEFAULT_OPERATION_TIMEOUT, poll_until
from gke_inference.hooks._retry import DEFAULT_RETRY
from gke_inference.ownership import carries_gcp_marks

ClusterStatus = container_v1.Cluster.Status
OperationStatus = container_v1.Operation.Status

# Cluster states that will not turn RUNNING by waiting.
FAILED_CLUSTER_STATES = frozenset({ClusterStatus.ERROR, ClusterStatus.DEGRADED})
# States in which the cluster's Kubernetes API serves its workloads: RECONCILING is "some work is
# actively being done on the cluster, such as upgrading the master or node software" while it keeps
# running (https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters#Status).
SERVING_CLUSTER_STATES = frozenset({ClusterStatus.RUNNING, ClusterStatus.RECONCILING})


class ClusterAuth(NamedTuple):
    """What a Kubernetes client needs to reach a cluster's control plane."""

    endpoint_url: str
    ca_certificate: str  # base64-encoded PEM, as the Container API returns it


class AutopilotClusterSpec(NamedTuple):
    """The tutorial's ``gcloud container clusters create-auto`` flags (tutorial 2.1)."""

    name: str
    network: str
    subnetwork: str
    pods_range_name: str
    services_range_name: str
    release_channel: str
    labels: dict[str, str]

    def to_cluster(self) -> container_v1.Cluster:
        channels = {c.name: c for c in container_v1.ReleaseChannel.Channel if c.value}
        channel = channels.get(self.release_channel.strip().upper())
        if channel is None:
            raise InvalidInputError(
                f"Unknown release channel {self.release_channel!r}; use one of {', '.join(channels)}"
            )
        return container_v1.Cluster(
            name=self.name,
            autopilot=container_v1.Autopilot(enabled=True),
            network=self.network,
            subnetwork=self.subnetwork,
            ip_allocation_policy=container_v1.IPAllocationPolicy(
                use_ip_aliases=True,
                cluster_secondary_range_name=self.pods_range_name,
                services_secondary_range_name=self.services_range_name,
            ),
            release_channel=container_v1.ReleaseChannel(channel=channel),
            resource_labels=dict(self.labels),
            network_config=container_v1.NetworkConfig(
                gateway_api_config=container_v1.GatewayAPIConfig(
                    channel=container_v1.GatewayAPIConfig.Channel.CHANNEL_STANDARD
                )
            ),
        )

    def mismatches(self, cluster: container_v1.Cluster) -> list[str]:
        """How an existing cluster differs from this spec in what the DAG relies on."""
        problems = []
        if not cluster.autopilot.enabled:
            problems.append("it is a Standard cluster, not Autopilot")
        network = _last_segment(cluster.network or cluster.network_config.network)
        if network != self.network:
            problems.append(f"it is on network {network!r}, not {self.network!r}")
        subnetwork = _last_segment(cluster.subnetwork or cluster.network_config.subnetwork)
        if subnetwork != self.subnetwork:
            problems.append(f"it is on subnetwork {subnetwork!r}, not {self.subnetwork!r}")
        return problems


def _last_segment(resource: str) -> str:
    return resource.rstrip("/").rsplit("/", 1)[-1]


def status_name(cluster: container_v1.Cluster) -> str:
    return ClusterStatus(cluster.status).name


class GKEClusterHook(EndpointAwareGoogleHook):
    """Create, read and delete GKE clusters in one location (region or zone)."""

    def __init__(
        self,
        *,
        location: str,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | list[str] | None = None,
    ) -> None:
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain)
        if not location:
            raise ValueError("A GKE location (region or zone) is required")
        self.location = location

    @cached_property
    def client(self) -> container_v1.ClusterManagerClient:
        return self.named_client(container_v1.ClusterManagerClient(**self.client_kwargs()))

    def _parent(self, project_id: str | None) -> str:
        return f"projects/{self.resolve_project_id(project_id)}/locations/{self.location}"

    def get_cluster(self, name: str, project_id: str | None = None) -> container_v1.Cluster:
        """The cluster; raises ``NotFound`` when it does not exist."""
        return self.client.get_cluster(
            name=f"{self._parent(project_id)}/clusters/{name}",
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )

    def find_cluster(self, name: str, project_id: str | None = None) -> container_v1.Cluster | None:
        try:
            return self.get_cluster(name, project_id)
        except api_exceptions.NotFound:
            return None

    def create_cluster(self, cluster: container_v1.Cluster, project_id: str | None = None):
        """Start creating a cluster; returns the Container API operation without waiting."""
        return self.client.create_cluster(
            parent=self._parent(project_id),
            cluster=cluster,
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )

    def delete_cluster(self, name: str, project_id: str | None = None) -> container_v1.Operation | None:
        """Start deleting a cluster; ``None`` when it is already gone."""
        try:
            return self.client.delete_cluster(
                name=f"{self._parent(project_id)}/clusters/{name}",
                retry=DEFAULT_RETRY,
                timeout=self.request_timeout,
            )
        except api_exceptions.NotFound:
            return None

    def get_operation(self, operation_name: str, project_id: str | None = None) -> container_v1.Operation:
        """An operation by its short name (``operation-123``) or full resource name."""
        name = _last_segment(operation_name)
        return self.client.get_operation(
            name=f"{self._parent(project_id)}/operations/{name}",
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )

    def wait_for_operation(
        self,
        operation: container_v1.Operation,
        project_id: str | None = None,
        *,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
        poll_interval: float = 5.0,
    ) -> container_v1.Operation:
        """Poll until DONE; raise ``OperationFailedError`` if it ended with an error."""
        done = poll_until(
            lambda: self.get_operation(operation.name, project_id),
            lambda op: op.status == OperationStatus.DONE,
            description=f"GKE operation {operation.name} ({operation.operation_type.name})",
            timeout=timeout,
            poll_interval=poll_interval,
        )
        raise_for_operation_error(done)
        return done

    def wait_until_deleted(
        self,
        name: str,
        project_id: str | None = None,
        *,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
        poll_interval: float = 5.0,
    ) -> None:
        """Poll until the cluster no longer exists."""
        poll_until(
            lambda: self.find_cluster(name, project_id),
            lambda cluster: cluster is None,
            description=f"Deleting cluster {name}",
            timeout=timeout,
            poll_interval=poll_interval,
        )

    def ensure_autopilot_cluster(self, spec: AutopilotClusterSpec, project_id: str | None = None) -> dict:
        """Create the cluster unless it exists; an existing one must match the spec.

        Returns ``{"name", "location", "project_id", "created", "status", "owned", "self_link",
        "operation"}``. Does not wait for RUNNING: that is the sensor's job.
        """
        project = self.resolve_project_id(project_id)
        cluster = self.find_cluster(spec.name, project)
        operation = None
        if cluster is None:
            try:
                operation = self.create_cluster(spec.to_cluster(), project)
            except api_exceptions.Conflict:
                self.log.info("Cluster %s was created concurrently; reading it back", spec.name)
            else:
                # Invalid requests can fail right away; later failures show as cluster ERROR.
                raise_for_operation_error(self.get_operation(operation.name, project))
            cluster = self.get_cluster(spec.name, project)
        problems = spec.mismatches(cluster)
        if problems:
            raise ResourceMismatchError(
                f"Cluster {spec.name!r} in {self.location} already exists but " + "; ".join(problems)
            )
        owned = carries_gcp_marks(dict(cluster.resource_labels), spec.labels)
        if operation is None and not owned:
            self.log.warning(
                "Cluster %s exists without our ownership label; teardown will keep it", spec.name
            )
        return {
            "name": cluster.name,
            "location": self.location,
            "project_id": project,
            "created": operation is not None,
            "status": status_name(cluster),
            "owned": owned,
            "self_link": cluster.self_link,
            "operation": operation.name if operation is not None else None,
        }

    def cluster_auth(self, cluster_name: str, project_id: str | None = None) -> ClusterAuth:
        """The control plane URL (``https://host:port``) and CA certificate of a cluster."""
        cluster = self.get_cluster(cluster_name, project_id)
        if not cluster.endpoint or not cluster.master_auth.cluster_ca_certificate:
            raise RuntimeError(
                f"Cluster {cluster_name!r} has no control plane endpoint yet (status {status_name(cluster)})"
            )
        return ClusterAuth(f"https://{cluster.endpoint}", cluster.master_auth.cluster_ca_certificate)


def raise_for_operation_error(operation: container_v1.Operation) -> None:
    """Raise ``OperationFailedError`` when a DONE operation carries an error."""
    if operation.status != OperationStatus.DONE:
        return
    error = operation.error
    message = error.message if error and error.message else operation.status_message
    if not message and not (error and error.code):
        return
    http_status = api_exceptions.from_grpc_status(error.code, message).code if error and error.code else None
    raise OperationFailedError(
        f"GKE operation {operation.name} ({operation.operation_type.name})",
        message or f"error code {error.code}",
        http_status=http_status,
    )


def cluster_summary(cluster: container_v1.Cluster, *, location: str, project_id: str) -> dict:
    """The small JSON-able view of a cluster that sensors hand on through XCom."""
    return {
        "name": cluster.name,
        "location": location,
        "project_id": project_id,
        "status": status_name(cluster),
        "current_master_version": cluster.current_master_version,
        "endpoint": cluster.endpoint,
        "self_link": cluster.self_link,
    }


def not_serving(cluster: container_v1.Cluster | None, name: str) -> str | None:
    """Why a cluster has no Kubernetes API to ask (it does not exist, is being deleted, is ERROR or
    DEGRADED, is still provisioning), or ``None`` when it serves one."""
    if cluster is None:
        return f"cluster {name!r} does not exist"
    if cluster.status in SERVING_CLUSTER_STATES:
        return None
    if cluster.status == ClusterStatus.STOPPING:
        return f"cluster {name!r} is being deleted (STOPPING)"
    message = f": {cluster.status_message}" if cluster.status_message else ""
    return f"cluster {name!r} is {status_name(cluster)}{message}"


def cluster_failure(cluster: container_v1.Cluster) -> str | None:
    """Why a cluster will never become RUNNING by waiting, or ``None`` if it still may."""
    if cluster.status not in FAILED_CLUSTER_STATES:
        return None
    details = [cluster.status_message] + [c.message for c in cluster.conditions if c.message]
    reason = "; ".join(d for d in dict.fromkeys(details) if d) or "no message from GKE"
    return f"cluster {cluster.name!r} is {status_name(cluster)}: {reason}"
