"""Trigger that waits, after the Gateway's delete, until GKE has released its load balancer.

On GKE the Gateway keeps its finalizer ``gateway.finalizer.networking.gke.io`` while the Gateway
controller removes the forwarding rule, proxy, URL map, backends and NEGs, over minutes; deleting the
cluster before that orphans them, and they then keep the subnets and the VPC from being deleted.
Both the cluster (Kubernetes API, through the GCP connection) and Compute are polled in a worker
thread; nothing secret is serialized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gke_inference.errors import is_service_disabled
from gke_inference.triggers.polling import PollingTrigger, Verdict

if TYPE_CHECKING:
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


@dataclass(frozen=True)
class ReleaseState:
    """One look: whether the wait is over, and a line for the log."""

    done: bool
    state: str
    left: tuple[str, ...] = ()


def assess_release(
    gateway: dict | None, cluster_exists: bool, frontend: list[str], no_cluster: str = "the cluster is gone"
) -> ReleaseState:
    """Done once the Gateway is gone (GKE drops its finalizer only after removing the load balancer).

    A Gateway that is not being deleted (not this DAG's, so left alone) gives nothing to wait for;
    neither does a cluster that is gone or not serving (``no_cluster`` says which): what it left
    behind is swept before the subnets go.
    """
    left = tuple(frontend)
    if not cluster_exists:
        return ReleaseState(True, f"{no_cluster}; leftovers are swept before the subnets", left)
    if gateway is None:
        if left:
            return ReleaseState(
                True, "the Gateway is gone but its load balancer is not; it is swept later", left
            )
        return ReleaseState(True, "the Gateway and its load balancer are gone")
    if not (gateway.get("metadata") or {}).get("deletionTimestamp"):
        return ReleaseState(
            True, "the Gateway is not being deleted (not this DAG's?); nothing to wait for", left
        )
    finalizers = ", ".join((gateway.get("metadata") or {}).get("finalizers") or [])
    return ReleaseState(
        False, f"the Gateway is being deleted, waiting for its finalizers ({finalizers})", left
    )


class GatewayReleasedTrigger(PollingTrigger):
    """Poll until the Gateway is gone (or never to be deleted), or the deadline passes.

    Every event's result is the list of load-balancer resources still named for the Gateway.
    """

    classpath = "gke_inference.triggers.teardown.GatewayReleasedTrigger"

    def __init__(
        self,
        *,
        namespace: str,
        gateway_name: str,
        network_name: str,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.namespace = namespace
        self.gateway_name = gateway_name
        self.network_name = network_name

    def wait_kwargs(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "gateway_name": self.gateway_name,
            "network_name": self.network_name,
        }

    def describe(self) -> str:
        return f"Gateway {self.namespace}/{self.gateway_name}"

    def make_hook(self) -> ClusterKubernetesHook:
        return self.target.kube_hook()

    def check(self, hook: ClusterKubernetesHook, now: float) -> Verdict:
        """One synchronous look (runs in a worker thread)."""
        # The Gateway first: GKE drops the finalizer after the load balancer, so read in that order.
        no_cluster, gateway = self._gateway(hook)
        try:
            frontend = [str(r) for r in self._leftovers().frontend]
        except Exception as exc:
            if not is_service_disabled(exc):
                raise
            frontend = []
        if no_cluster:
            release = assess_release(None, False, frontend, no_cluster)
        else:
            release = assess_release(gateway, True, frontend)
        return Verdict(state=release.state, done=release.done, result=list(release.left))

    def _leftovers(self):  # noqa: ANN202
        from gke_inference.hooks.loadbalancers import LoadBalancerHook, find_gateway_leftovers

        hook = LoadBalancerHook(**self.target.gcp_hook_kwargs())
        project, region = self.target.project_id, self.target.location
        return find_gateway_leftovers(
            hook.inventory(region, project),
            namespace=self.namespace,
            gateway=self.gateway_name,
            network_link=hook.network_link(self.network_name, project),
            region=region,
        )

    def _gateway(self, hook: ClusterKubernetesHook) -> tuple[str | None, dict | None]:
        """(why the cluster has no Kubernetes API to ask, or None; the Gateway or None).

        The Container API is asked first: a cluster gone, being deleted, ERROR or DEGRADED holds no
        Gateway to wait for, and its Kubernetes API is not tried.
        """
        from google.api_core import exceptions as api_exceptions
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        from gke_inference.hooks.gke import not_serving

        name = self.target.cluster_name
        try:
            reason = not_serving(hook.gke_hook.find_cluster(name, self.target.project_id), name)
            if reason:
                return reason, None
            return None, hook.get(GATEWAY_API_VERSION, "Gateway", self.gateway_name, self.namespace)
        except ResourceNotFoundError:
            return None, None  # the Gateway API is not served: no Gateway can exist
        except Exception as exc:
            if isinstance(exc, api_exceptions.NotFound) or is_service_disabled(exc):
                return f"cluster {name!r} does not exist", None
            raise
