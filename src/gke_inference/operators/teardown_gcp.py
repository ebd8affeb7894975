"""Teardown of the GCP side: the cluster, the subnetworks and the VPC, only if the DAG made them.

Ownership: clusters carry the ``managed-by`` resource label; networks and subnetworks, which have
no labels, carry the DAG's description. Anything else is left alone and reported as "not owned".
A resource already gone counts as success, and so does an API that is disabled (a teardown of a
project the DAG never reached: nothing of that API can exist). Order them: the Gateway's load balancer
released (sensors.teardown) -> cluster -> the Gateway's leftovers swept -> subnetworks -> network.
Hooks are imported inside ``execute`` to keep DAG parsing free of the Google client libraries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from gke_inference import results
from gke_inference.arguments import seconds
from gke_inference.errors import is_service_disabled
from gke_inference.operators._gcp_base import GcpOperator
from gke_inference.results import gcp_ref

if TYPE_CHECKING:
    import logging

    from gke_inference.hooks.gke import GKEClusterHook

DELETED, ABSENT, NOT_OWNED = "deleted", "absent", "not owned"


def _outcome(ref: str, name: str, reason: str) -> dict:
    """The one result shape (gke_inference.results), the reason kept as a detail."""
    outcome = {DELETED: results.DELETED, ABSENT: results.ABSENT, NOT_OWNED: results.NOT_OWNED}[reason]
    return results.one(outcome, ref, name=name, reason=reason)


class DeleteClusterOperator(GcpOperator):
    """Delete the cluster if it carries the DAG's label, and wait until it is gone.

    XCom: ``{"deleted"|"absent"|"not_owned": [ref], "name", "reason"}`` (gke_inference.results).
    """

    tutorial_step = "2.1"
    action = "Deleting the cluster"
    template_fields: Sequence[str] = (
        *GcpOperator.template_fields,
        "cluster_name",
        "location",
        "delete_timeout",
    )

    def __init__(
        self, *, cluster_name: str, location: str, delete_timeout: float = 1800, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.location = location
        self.delete_timeout = delete_timeout

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            timeout = seconds(self.delete_timeout, "delete_timeout")
            from gke_inference.hooks.gke import GKEClusterHook

            hook = GKEClusterHook(location=self.location, **self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            try:
                reason = self._delete(hook, project, timeout)
            except Exception as exc:
                if not is_service_disabled(exc):
                    raise
                self.log.info("The Kubernetes Engine API is disabled: no cluster can exist")
                reason = ABSENT
        self.log.info("Cluster %s: %s", self.cluster_name, reason)
        return _outcome(gcp_ref("Cluster", self.location, self.cluster_name), self.cluster_name, reason)

    def _delete(self, hook: GKEClusterHook, project: str, timeout: float) -> str:
        cluster = hook.find_cluster(self.cluster_name, project)
        if cluster is None:
            return ABSENT
        if not self.ownership.owns_gcp_labels(dict(cluster.resource_labels)):
            self.log.warning("Cluster %s lacks the DAG's ownership label; leaving it", self.cluster_name)
            return NOT_OWNED
        from gke_inference.hooks.gke import ClusterStatus

        if cluster.status != ClusterStatus.STOPPING:
            operation = hook.delete_cluster(self.cluster_name, project)
            if operation is None:
                return ABSENT
            hook.wait_for_operation(operation, project, timeout=timeout)
        hook.wait_until_deleted(self.cluster_name, project, timeout=timeout)
        return DELETED


class DeleteSubnetworkOperator(GcpOperator):
    """Delete a subnetwork (node or proxy-only) if the DAG created it, and wait.

    XCom: ``{"deleted"|"absent"|"not_owned": [ref], "name", "reason"}`` (gke_inference.results).
    """

    tutorial_step = "1.3"
    action = "Deleting the subnetwork"
    template_fields: Sequence[str] = (*GcpOperator.template_fields, "subnetwork_name", "region")

    def __init__(self, *, subnetwork_name: str, region: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subnetwork_name = subnetwork_name
        self.region = region

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.compute_network import ComputeNetworkHook

            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            reason = _absent_if_compute_disabled(self._delete, hook, project, self.log)
        self.log.info("Subnetwork %s: %s", self.subnetwork_name, reason)
        ref = gcp_ref("Subnetwork", self.region, self.subnetwork_name)
        return _outcome(ref, self.subnetwork_name, reason)

    def _delete(self, hook, project: str) -> str:
        subnetwork = hook.find_subnetwork(self.subnetwork_name, self.region, project)
        if subnetwork is None:
            return ABSENT
        if not self.ownership.owns_network_description(subnetwork.description):
            return NOT_OWNED
        return DELETED if hook.delete_subnetwork(self.subnetwork_name, self.region, project) else ABSENT


class DeleteNetworkOperator(GcpOperator):
    """Delete the VPC if the DAG created it (its subnetworks must be gone first), and wait.

    XCom: ``{"deleted"|"absent"|"not_owned": [ref], "name", "reason"}`` (gke_inference.results).
    """

    tutorial_step = "1.3"
    action = "Deleting the VPC"
    template_fields: Sequence[str] = (*GcpOperator.template_fields, "network_name")

    def __init__(self, *, network_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network_name = network_name

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.compute_network import ComputeNetworkHook

            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            reason = _absent_if_compute_disabled(self._delete, hook, project, self.log)
        self.log.info("Network %s: %s", self.network_name, reason)
        return _outcome(gcp_ref("Network", self.network_name), self.network_name, reason)

    def _delete(self, hook, project: str) -> str:
        network = hook.find_network(self.network_name, project)
        if network is None:
            return ABSENT
        if not self.ownership.owns_network_description(network.description):
            return NOT_OWNED
        foreign = self._foreign_subnetworks(hook, network, project)
        if foreign:
            # No retry can change this: only whoever made these subnets may delete them.
            raise AirflowFailException(
                f"{self.action} (tutorial {self.tutorial_step}): VPC {self.network_name} holds "
                f"subnetwork(s) the DAG did not create: {', '.join(foreign)}. The VPC was kept on purpose; "
                "delete those subnetworks yourself (or keep the VPC) and clear this task."
            )
        return DELETED if hook.delete_network(self.network_name, project) else ABSENT

    def _foreign_subnetworks(self, hook, network, project: str) -> list[str]:
        """The VPC's subnetworks (``Network.subnetworks``: their URLs) that lack the DAG's description."""
        foreign = []
        for link in network.subnetworks:
            region, name = link.rstrip("/").split("/")[-3], link.rstrip("/").split("/")[-1]
            subnetwork = hook.find_subnetwork(name, region, project)
            if subnetwork is not None and not self.ownership.owns_network_description(subnetwork.description):
                foreign.append(f"{region}/{name}")
        return foreign


class SweepGatewayLoadBalancerOperator(GcpOperator):
    """Before the subnets and the VPC go: delete what GKE built for this DAG's Gateway and did not
    remove (the cluster went first, or an earlier teardown was interrupted), users before what they
    use; then fail, naming them, if resources the DAG did not create still use its subnets or VPC.

    Only resources provably this Gateway's are deleted: named ``gkegw1-<cluster>-<namespace>-<gateway>-``
    in this region and VPC, what those reference, and the same cluster's backends and firewall (see
    ``gke_inference.hooks.loadbalancers``). An already deleted resource counts as done, so a rerun
    finishes an interrupted sweep.

    XCom: ``{"deleted": [...], "absent": [...], "blockers": [...]}``.
    """

    tutorial_step = "3.4"
    action = "Sweeping the Gateway's load balancer"
    template_fields: Sequence[str] = (
        *GcpOperator.template_fields,
        "region",
        "network_name",
        "subnetwork_names",
        "namespace",
        "gateway_name",
    )

    def __init__(
        self,
        *,
        region: str,
        network_name: str,
        subnetwork_names: Sequence[str],
        namespace: str,
        gateway_name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.region = region
        self.network_name = network_name
        self.subnetwork_names = subnetwork_names
        self.namespace = namespace
        self.gateway_name = gateway_name

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.loadbalancers import LoadBalancerHook

            hook = LoadBalancerHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            try:
                result = self._sweep(hook, project)
            except Exception as exc:
                if not is_service_disabled(exc):
                    raise
                self.log.info("The Compute Engine API is disabled: no load balancer can exist")
                return {"deleted": [], "absent": [], "blockers": []}
        if result["blockers"]:
            raise AirflowFailException(
                f"{self.action} (tutorial {self.tutorial_step}): the DAG's subnets or VPC are still used by "
                f"resources it did not create, left alone: {', '.join(result['blockers'])}. Delete them (or "
                "keep the network) and clear this task."
            )
        return result

    def _sweep(self, hook, project: str) -> dict:
        from gke_inference.hooks.loadbalancers import find_gateway_leftovers

        owned_subnets = []
        for name in self.subnetwork_names:
            subnetwork = hook.find_subnetwork(name, self.region, project)
            if subnetwork is not None and self.ownership.owns_network_description(subnetwork.description):
                owned_subnets.append(subnetwork.self_link)
        network = hook.find_network(self.network_name, project)
        leftovers = find_gateway_leftovers(
            hook.inventory(self.region, project),
            namespace=self.namespace,
            gateway=self.gateway_name,
            network_link=hook.network_link(self.network_name, project),
            region=self.region,
            owned_subnet_links=owned_subnets,
            network_owned=network is not None
            and self.ownership.owns_network_description(network.description),
        )
        deleted, absent = [], []
        for resource in leftovers.resources:
            gone_before = not hook.delete_resource(resource, project)
            (absent if gone_before else deleted).append(str(resource))
            self.log.info("%s: %s", resource, "already gone" if gone_before else "deleted")
        return {"deleted": deleted, "absent": absent, "blockers": [str(r) for r in leftovers.blockers]}


def _absent_if_compute_disabled(
    delete: Callable[[Any, str], str], hook: Any, project: str, log: logging.Logger
) -> str:
    try:
        return delete(hook, project)
    except Exception as exc:
        if not is_service_disabled(exc):
            raise
        log.info("The Compute Engine API is disabled: no network can exist")
        return ABSENT
