"""Tutorial 2.1: wait until the cluster is RUNNING (the tutorial's ``until ... grep RUNNING`` loop).

The hook and trigger are imported where used, to keep DAG parsing free of the Google client libraries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks._errors import explain, is_terminal
from gke_inference.links import ClusterConsoleLink
from gke_inference.operators._gcp_base import as_seconds

TUTORIAL_STEP = "2.1"


class ClusterRunningSensor(BaseSensorOperator):
    """Wait, deferred, for the cluster to be RUNNING; fail at once if it goes to ERROR or DEGRADED.

    XCom: ``{"name", "location", "project_id", "status", "current_master_version", "endpoint",
    "self_link"}``; ``current_master_version`` chooses the CRD set in tutorial 2.2.
    """

    operator_extra_links = (ClusterConsoleLink(),)
    template_fields: Sequence[str] = (
        "cluster_name",
        "location",
        "project_id",
        "gcp_conn_id",
        "impersonation_chain",
        "wait_timeout",
        "poll_interval",
    )

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        timeout: float | str = 1800,
        poll_interval: float | str = 15,
        **kwargs: Any,
    ) -> None:
        # `timeout` is a template here (e.g. "{{ params.cluster_timeout }}"), so it is kept apart from
        # BaseSensorOperator.timeout, which must be a number when the DAG is parsed.
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.location = location
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.wait_timeout = timeout
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict | None:
        from gke_inference.hooks.gke import ClusterStatus, GKEClusterHook, cluster_failure, cluster_summary
        from gke_inference.triggers.cluster import ClusterRunningTrigger

        try:
            timeout = as_seconds(self.wait_timeout, "timeout")
            poll_interval = as_seconds(self.poll_interval, "poll_interval")
            hook = GKEClusterHook(
                location=self.location,
                gcp_conn_id=self.gcp_conn_id,
                impersonation_chain=self.impersonation_chain,
            )
            project = hook.resolve_project_id(self.project_id)
            cluster = hook.get_cluster(self.cluster_name, project)
        except Exception as exc:
            if is_terminal(exc):
                raise self._failure(explain(exc)) from exc
            raise
        if cluster.status == ClusterStatus.RUNNING:
            return cluster_summary(cluster, location=self.location, project_id=project)
        failure = cluster_failure(cluster)
        if failure:
            raise self._failure(failure)
        self.log.info(
            "Cluster %s is %s; deferring for up to %.0f s", self.cluster_name, cluster.status.name, timeout
        )
        self.defer(
            trigger=ClusterRunningTrigger(
                cluster_name=self.cluster_name,
                location=self.location,
                project_id=project,
                gcp_conn_id=self.gcp_conn_id,
                impersonation_chain=self.impersonation_chain,
                poll_interval=poll_interval,
                deadline=time.time() + timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout),
        )
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict:
        from gke_inference.triggers.cluster import FAILED, SUCCESS

        status = event.get("status")
        if status == SUCCESS:
            cluster = event["cluster"]
            self.log.info(
                "Cluster %s is RUNNING, version %s", cluster["name"], cluster["current_master_version"]
            )
            return cluster
        message = event.get("message", "no message")
        if status == FAILED:
            raise self._failure(message)
        raise RuntimeError(f"Waiting for cluster {self.cluster_name!r} failed, will retry: {message}")

    def _failure(self, reason: str) -> AirflowFailException:
        return AirflowFailException(f"Waiting for the cluster (tutorial {TUTORIAL_STEP}) failed: {reason}")
