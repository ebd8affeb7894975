"""Teardown: wait, deferred, until GKE has released the Gateway's load balancer.

The trigger is imported where used, to keep DAG parsing free of the Google and Kubernetes clients.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from gke_inference.arguments import seconds
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast

# The trigger ends the wait itself with the last state it saw; the deferral timeout is a backstop.
DEFER_TIMEOUT_MARGIN = 60.0
WHAT = "Waiting for the Gateway's load balancer (teardown)"


class GatewayReleasedSensor(ClusterTaskMixin, BaseSensorOperator):
    """Wait until the deleted Gateway is gone: GKE removes its finalizer only after deleting the
    forwarding rule, proxy, URL map, backends and NEGs, which otherwise outlive the cluster and
    keep its subnets and VPC in use. A missing cluster or a Gateway that is not being deleted ends
    the wait at once (what is left is swept before the subnets go).

    XCom: ``{"message": str, "left": [<load-balancer resources still named for the Gateway>]}``.
    """

    template_fields: Sequence[str] = (
        *ClusterTaskMixin.cluster_template_fields,
        "namespace",
        "gateway_name",
        "network_name",
        "wait_timeout",
    )

    def __init__(
        self,
        *,
        namespace: str,
        gateway_name: str,
        network_name: str,
        wait_timeout: float = 1800,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.gateway_name = gateway_name
        self.network_name = network_name
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> None:
        from gke_inference.hooks.loadbalancers import LoadBalancerHook
        from gke_inference.triggers.teardown import GatewayReleasedTrigger

        with failing_fast(WHAT):
            wait_seconds = seconds(self.wait_timeout, "wait_timeout")
            target = self.cluster_target
            hook = LoadBalancerHook(**target.gcp_hook_kwargs())
            target = replace(target, project_id=hook.resolve_project_id(target.project_id))
        started = time.time()
        self.defer(
            trigger=GatewayReleasedTrigger(
                **target.to_dict(),
                namespace=self.namespace,
                gateway_name=self.gateway_name,
                network_name=self.network_name,
                started_at=started,
                deadline=started + wait_seconds,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait_seconds + DEFER_TIMEOUT_MARGIN),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        from gke_inference.triggers.polling import ERROR, SUCCESS, TIMEOUT

        status, message, left = event.get("status"), event.get("message", ""), list(event.get("result") or [])
        if status == SUCCESS:
            if left:
                self.log.warning("%s; left for the sweep: %s", message, ", ".join(left))
            else:
                self.log.info("%s", message)
            return {"message": message, "left": left}
        still_there = f"; still there: {', '.join(left)}" if left else ""
        if status == TIMEOUT:
            raise AirflowSensorTimeout(
                f"{message}{still_there} (teardown: GKE has not released the load balancer)"
            )
        if status == ERROR:  # neither transient nor terminal: the task retries
            raise RuntimeError(message)
        raise AirflowFailException(message)
