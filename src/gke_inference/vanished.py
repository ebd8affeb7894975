"""When a wait or a check fails: look at what it depends on and say which is gone, in the tutorial's
words ("The cluster inference-gateway-lab (tutorial 2.1) no longer exists ..."). A gone dependency is
final: no retry brings it back, only a new run of the DAG that builds it.

Each look is one GET; a look that itself fails says nothing (the original error stands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gke_inference.hooks.gke import GKEClusterHook
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
POOL_API_VERSION = "inference.networking.k8s.io/v1"
RUN_AGAIN = "run the DAG again (mode ensure or rebuild) to build it"


def cluster_vanished(gke: GKEClusterHook, name: str, project_id: str | None) -> str | None:
    """A sentence when the cluster is gone, being deleted or broken; None while it may still serve."""
    from gke_inference.errors import is_service_disabled
    from gke_inference.hooks.gke import FAILED_CLUSTER_STATES, ClusterStatus, status_name

    where = f"The cluster {name} (tutorial 2.1)"
    try:
        cluster = gke.find_cluster(name, project_id)
    except Exception as exc:
        if is_service_disabled(exc):
            # What a project reset (or a restarted twin) looks like: the API itself is off.
            return (
                f"{where} no longer exists: the Kubernetes Engine API is disabled in the project; {RUN_AGAIN}"
            )
        return None
    if cluster is None:
        return f"{where} no longer exists: it was deleted while the DAG was using it; {RUN_AGAIN}"
    if cluster.status == ClusterStatus.STOPPING:
        return f"{where} is being deleted; {RUN_AGAIN} once it is gone"
    if cluster.status in FAILED_CLUSTER_STATES:
        detail = f": {cluster.status_message}" if cluster.status_message else ""
        return f"{where} is {status_name(cluster)}{detail}; run the DAG in mode rebuild to replace it"
    return None


def object_vanished(
    hook: ClusterKubernetesHook, namespace: str, *, gateway: str = "", pool: str = ""
) -> str | None:
    """A sentence naming the Gateway (tutorial 3.4) or InferencePool (3.3) that is gone, else None."""
    wanted = []
    if gateway:
        wanted.append((GATEWAY_API_VERSION, "Gateway", gateway, "tutorial 3.4", "gateway.apply_gateway"))
    if pool:
        wanted.append(
            (POOL_API_VERSION, "InferencePool", pool, "tutorial 3.3", "gateway.apply_inference_pool")
        )
    for api_version, kind, name, step, task in wanted:
        try:
            found = hook.get(api_version, kind, name, namespace)
        except Exception:
            return None
        if found is None:
            return (
                f"The {kind} {namespace}/{name} ({step}) no longer exists: it was deleted after the DAG "
                f"applied it; clear {task} (and what follows) to apply it again"
            )
    return None


def what_vanished(
    hook: ClusterKubernetesHook, namespace: str = "", *, gateway: str = "", pool: str = ""
) -> str | None:
    """The cluster first (without it nothing else can be asked), then the Gateway and the pool."""
    target = hook.target
    gone = cluster_vanished(hook.gke_hook, target.cluster_name, target.project_id)
    if gone or not (gateway or pool):
        return gone
    return object_vanished(hook, namespace, gateway=gateway, pool=pool)
