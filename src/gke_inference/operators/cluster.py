"""Tutorial 2.1: the GKE Autopilot cluster (``gcloud container clusters create-auto ... --async``).

The hook is imported inside ``execute`` to keep DAG parsing free of the Google client libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gke_inference.links import ClusterConsoleLink
from gke_inference.operators._gcp_base import GcpOperator
from gke_inference.results import created_or_found, gcp_ref

if TYPE_CHECKING:
    from gke_inference.hooks.gke import AutopilotClusterSpec


class EnsureAutopilotClusterOperator(GcpOperator):
    """Create the Autopilot cluster unless it exists; do not wait for it (the sensor does).

    The cluster is VPC-native on the node subnet's two secondary ranges, on the given release
    channel, with the Gateway API enabled and the DAG's ownership label. An existing cluster must be
    Autopilot on the same network and subnetwork, else the task fails.
    XCom: ``{"name", "location", "project_id", "created", "status", "owned", "self_link", "operation"}``.
    """

    tutorial_step = "2.1"
    action = "Creating the Autopilot cluster"
    operator_extra_links = (ClusterConsoleLink(),)
    template_fields: Sequence[str] = (
        *GcpOperator.template_fields,
        "cluster_name",
        "location",
        "network_name",
        "subnetwork_name",
        "pods_range_name",
        "services_range_name",
        "release_channel",
    )

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        network_name: str,
        subnetwork_name: str,
        pods_range_name: str,
        services_range_name: str,
        release_channel: str = "RAPID",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.location = location
        self.network_name = network_name
        self.subnetwork_name = subnetwork_name
        self.pods_range_name = pods_range_name
        self.services_range_name = services_range_name
        self.release_channel = release_channel

    def spec(self) -> AutopilotClusterSpec:
        from gke_inference.hooks.gke import AutopilotClusterSpec

        return AutopilotClusterSpec(
            name=self.cluster_name,
            network=self.network_name,
            subnetwork=self.subnetwork_name,
            pods_range_name=self.pods_range_name,
            services_range_name=self.services_range_name,
            release_channel=self.release_channel,
            labels=self.ownership.gcp_labels,
        )

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.gke import GKEClusterHook

            hook = GKEClusterHook(location=self.location, **self.hook_kwargs())
            result = hook.ensure_autopilot_cluster(self.spec(), self.project_id)
        self.log.info(
            "Cluster %s %s (status %s)",
            result["name"],
            "creation started" if result["created"] else "already exists",
            result["status"],
        )
        created, ref = result.pop("created"), gcp_ref("Cluster", self.location, result["name"])
        return created_or_found(created, ref, **result)
