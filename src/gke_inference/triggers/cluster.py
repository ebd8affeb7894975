"""Trigger that waits for a GKE cluster to be RUNNING (tutorial 2.1), in the shape of ``triggers.polling``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gke_inference.triggers.polling import PollingTrigger, Verdict

if TYPE_CHECKING:
    from gke_inference.hooks.gke import GKEClusterHook


class ClusterRunningTrigger(PollingTrigger):
    """Poll a cluster until it is RUNNING; fail at once on ERROR or DEGRADED, or when it is gone.

    Polls start after 1 s and slow down to ``poll_interval``. At the deadline a cluster still
    provisioning is no verdict on it: the event is a timeout, and the sensor lets the task retry.
    The success event's result is the cluster summary (``hooks.gke.cluster_summary``).
    """

    classpath = "gke_inference.triggers.cluster.ClusterRunningTrigger"
    first_poll_interval = 1.0

    def __init__(self, *, poll_interval: float = 15.0, **kwargs: Any) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)

    def describe(self) -> str:
        return f"cluster {self.target.cluster_name!r}"

    def failure_message(self, failure: str) -> str:
        return failure  # already names the cluster

    def make_hook(self) -> GKEClusterHook:
        return self.target.gke_hook()

    def check(self, hook: GKEClusterHook, now: float) -> Verdict:
        return assess_cluster(hook, self.target.cluster_name, self.target.location, self.target.project_id)


def assess_cluster(hook: GKEClusterHook, name: str, location: str, project_id: str | None) -> Verdict:
    """One look at the cluster: RUNNING (done), ERROR/DEGRADED/gone (failure), or still on its way."""
    from gke_inference.hooks.gke import ClusterStatus, cluster_failure, cluster_summary, status_name

    cluster = hook.find_cluster(name, project_id)
    if cluster is None:
        # Gone: deleted, or a failed creation that GKE (and the sandbox) cleaned up.
        return Verdict(
            state="gone",
            failure=f"cluster {name!r} does not exist in {location}: its creation failed or it was deleted; "
            "clear the create task to create it again",
        )
    if cluster.status == ClusterStatus.RUNNING:
        project = project_id or hook.resolve_project_id(None)
        return Verdict(
            state="RUNNING", done=True, result=cluster_summary(cluster, location=location, project_id=project)
        )
    return Verdict(state=status_name(cluster), failure=cluster_failure(cluster))
