"""Trigger that waits, after the Gateway's delete, until GKE has released its load balancer.

On GKE the Gateway keeps its finalizer ``gateway.finalizer.networking.gke.io`` while the Gateway
controller removes the forwarding rule, proxy, URL map, backends and NEGs, over minutes; deleting the
cluster before that orphans them, and they then keep the subnets and the VPC from being deleted.
Both the cluster (Kubernetes API, through the GCP connection) and Compute are polled in a worker
thread; nothing secret is serialized.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from gke_inference.hooks._retry import describe_error, is_transient

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
# Event "status" values, as the other triggers of this package use them.
SUCCESS, FAILED, TIMEOUT = "success", "failed", "timeout"


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


class GatewayReleasedTrigger(BaseTrigger):
    """Poll until the Gateway is gone (or never to be deleted), or the deadline passes.

    :param deadline: epoch seconds after which the trigger reports a timeout with what is left.
    """

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        project_id: str,
        gcp_conn_id: str,
        namespace: str,
        gateway_name: str,
        network_name: str,
        started_at: float,
        deadline: float,
        poll_interval: float = 10.0,
        log_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.cluster_name = cluster_name
        self.location = location
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.namespace = namespace
        self.gateway_name = gateway_name
        self.network_name = network_name
        self.started_at = float(started_at)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.log_interval = float(log_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster_name": self.cluster_name,
                "location": self.location,
                "project_id": self.project_id,
                "gcp_conn_id": self.gcp_conn_id,
                "namespace": self.namespace,
                "gateway_name": self.gateway_name,
                "network_name": self.network_name,
                "started_at": self.started_at,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "log_interval": self.log_interval,
            },
        )

    def describe(self) -> str:
        return f"Gateway {self.namespace}/{self.gateway_name}"

    def check(self) -> ReleaseState:
        """One synchronous look (runs in a worker thread)."""
        from gke_inference.operators.teardown_gcp import is_service_disabled

        # The Gateway first: GKE drops the finalizer after the load balancer, so read in that order.
        no_cluster, gateway = self._gateway()
        try:
            frontend = [str(r) for r in self._leftovers().frontend]
        except Exception as exc:
            if not is_service_disabled(exc):
                raise
            frontend = []
        if no_cluster:
            return assess_release(None, False, frontend, no_cluster)
        return assess_release(gateway, True, frontend)

    def _leftovers(self):  # noqa: ANN202
        from gke_inference.hooks.loadbalancers import LoadBalancerHook, find_gateway_leftovers

        hook = LoadBalancerHook(gcp_conn_id=self.gcp_conn_id)
        network_link = hook.network_link(self.network_name, self.project_id)
        return find_gateway_leftovers(
            hook.inventory(self.location, self.project_id),
            namespace=self.namespace,
            gateway=self.gateway_name,
            network_link=network_link,
            region=self.location,
        )

    def _gateway(self) -> tuple[str | None, dict | None]:
        """(why the cluster has no Kubernetes API to ask, or None; the Gateway or None).

        The Container API is asked first: a cluster gone, being deleted, ERROR or DEGRADED holds no
        Gateway to wait for, and its Kubernetes API is not tried.
        """
        from google.api_core import exceptions as api_exceptions
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        from gke_inference.hooks.gke import not_serving
        from gke_inference.hooks.kubernetes import KubernetesApplyHook
        from gke_inference.operators.teardown_gcp import is_service_disabled

        hook = KubernetesApplyHook(
            cluster_name=self.cluster_name,
            location=self.location,
            project_id=self.project_id,
            gcp_conn_id=self.gcp_conn_id,
        )
        try:
            reason = not_serving(
                hook.gke_hook.find_cluster(self.cluster_name, self.project_id), self.cluster_name
            )
            if reason:
                return reason, None
            return None, hook.get(GATEWAY_API_VERSION, "Gateway", self.gateway_name, self.namespace)
        except ResourceNotFoundError:
            return None, None  # the Gateway API is not served: no Gateway can exist
        except Exception as exc:
            if isinstance(exc, api_exceptions.NotFound) or is_service_disabled(exc):
                return f"cluster {self.cluster_name!r} does not exist", None
            raise

    async def run(self) -> AsyncIterator[TriggerEvent]:
        last_state, last_logged = "no answer yet", float("-inf")
        while True:
            now = time.time()
            try:
                verdict = await asyncio.to_thread(self.check)
            except Exception as exc:
                if not is_transient(exc):
                    yield TriggerEvent(self._event(FAILED, f"{self.describe()}: {describe_error(exc)}"))
                    return
                verdict = ReleaseState(False, f"{last_state} (last poll failed: {describe_error(exc)})")
            if verdict.done:
                yield TriggerEvent(self._event(SUCCESS, f"{self.describe()}: {verdict.state}", verdict.left))
                return
            last_state = verdict.state
            if now >= self.deadline:
                waited = int(now - self.started_at)
                left = "; still there: " + ", ".join(verdict.left) if verdict.left else ""
                message = f"{self.describe()}: gave up after {waited} s; {verdict.state}{left}"
                yield TriggerEvent(self._event(TIMEOUT, message, verdict.left))
                return
            if now - last_logged >= self.log_interval:
                self.log.info("%s: %s (%d s elapsed)", self.describe(), verdict.state, now - self.started_at)
                last_logged = now
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - now)))

    @staticmethod
    def _event(status: str, message: str, left: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"status": status, "message": message, "left": list(left)}
