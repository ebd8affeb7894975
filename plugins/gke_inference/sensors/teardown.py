"""Teardown: wait, deferred, until GKE has released the Gateway's load balancer.

The trigger is imported where used, to keep DAG parsing free of the Google and Kubernetes clients.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from gke_inference.operators._gcp_base import as_seconds
from gke_inference.operators.kubernetes import optional_param

# The trigger ends the wait itself with the last state it saw; the deferral timeout is a backstop.
DEFER_TIMEOUT_MARGIN = 60.0


class GatewayReleasedSensor(BaseSensorOperator):
    """Wait until the deleted Gateway is gone: GKE removes its finalizer only after deleting the
    forwarding rule, proxy, URL map, backends and NEGs, which otherwise outlive the cluster and
    keep its subnets and VPC in use. A missing cluster or a Gateway that is not being deleted ends
    the wait at once (what is left is swept before the subnets go).

    XCom: ``{"message": str, "left": [<load-balancer resources still named for the Gateway>]}``.
    """

    template_fields: Sequence[str] = (
        "cluster_name",
        "location",
        "project_id",
        "gcp_conn_id",
        "namespace",
        "gateway_name",
        "network_name",
        "wait_timeout",
    )

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        namespace: str,
        gateway_name: str,
        network_name: str,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        wait_timeout: float | str = 1800,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.location = location
        self.namespace = namespace
        self.gateway_name = gateway_name
        self.network_name = network_name
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> None:
        from gke_inference.hooks._errors import explain, is_terminal
        from gke_inference.hooks.loadbalancers import LoadBalancerHook
        from gke_inference.triggers.teardown import GatewayReleasedTrigger

        try:
            seconds = as_seconds(self.wait_timeout, "wait_timeout")
            project = LoadBalancerHook(gcp_conn_id=self.gcp_conn_id).resolve_project_id(
                optional_param(self.project_id)
            )
        except Exception as exc:
            if is_terminal(exc):
                raise AirflowFailException(
                    f"Waiting for the Gateway's load balancer failed: {explain(exc)}"
                ) from exc
            raise
        started = time.time()
        self.defer(
            trigger=GatewayReleasedTrigger(
                cluster_name=self.cluster_name,
                location=self.location,
                project_id=project,
                gcp_conn_id=self.gcp_conn_id,
                namespace=self.namespace,
                gateway_name=self.gateway_name,
                network_name=self.network_name,
                started_at=started,
                deadline=started + seconds,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=seconds + DEFER_TIMEOUT_MARGIN),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        from gke_inference.triggers.teardown import SUCCESS, TIMEOUT

        status, message, left = event.get("status"), event.get("message", ""), list(event.get("left") or [])
        if status == SUCCESS:
            if left:
                self.log.warning("%s; left for the sweep: %s", message, ", ".join(left))
            else:
                self.log.info("%s", message)
            return {"message": message, "left": left}
        if status == TIMEOUT:
            raise AirflowSensorTimeout(f"{message} (teardown: GKE has not released the load balancer)")
        raise AirflowFailException(message)
