"""Trigger that waits for a GKE cluster to be RUNNING (tutorial 2.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from google.api_core import exceptions as api_exceptions

from gke_inference.hooks._errors import explain, is_terminal
from gke_inference.hooks._retry import describe_error, is_transient
from gke_inference.hooks.gke import (
    ClusterStatus,
    GKEClusterHook,
    cluster_failure,
    cluster_summary,
    status_name,
)

# Spelled out: Airflow's plugin loader may import this file a second time under another module name.
CLASSPATH = "gke_inference.triggers.cluster.ClusterRunningTrigger"
# Event "status" values: success -> the cluster; failed -> terminal, do not retry; error -> retry the task.
SUCCESS, FAILED, ERROR = "success", "failed", "error"


class ClusterRunningTrigger(BaseTrigger):
    """Poll a cluster until it is RUNNING; fail at once on ERROR or DEGRADED.

    Transient API errors (429, 5xx, dropped connections) are logged and polling goes on. Progress
    is logged every ``log_interval`` seconds (or every poll when polls are slower). ``deadline`` is
    a Unix timestamp after which the trigger reports a timeout.
    """

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        project_id: str,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = 15.0,
        deadline: float | None = None,
        log_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.cluster_name = cluster_name
        self.location = location
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.log_interval = log_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "cluster_name": self.cluster_name,
                "location": self.location,
                "project_id": self.project_id,
                "gcp_conn_id": self.gcp_conn_id,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "log_interval": self.log_interval,
            },
        )

    def _make_hook(self) -> GKEClusterHook:
        return GKEClusterHook(
            location=self.location, gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        last_progress_log = float("-inf")
        hook: GKEClusterHook | None = None
        while True:
            try:
                hook = hook or await asyncio.to_thread(self._make_hook)
                cluster = await asyncio.to_thread(hook.get_cluster, self.cluster_name, self.project_id)
            except api_exceptions.NotFound:
                yield self._event(FAILED, f"cluster {self.cluster_name!r} does not exist in {self.location}")
                return
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, api_exceptions.RetryError)):
                    yield self._event(FAILED if is_terminal(exc) else ERROR, explain(exc))
                    return
                self.log.warning(
                    "Transient error reading cluster %s: %s", self.cluster_name, describe_error(exc)
                )
            else:
                if cluster.status == ClusterStatus.RUNNING:
                    summary = cluster_summary(cluster, location=self.location, project_id=self.project_id)
                    yield TriggerEvent({"status": SUCCESS, "cluster": summary})
                    return
                failure = cluster_failure(cluster)
                if failure:
                    yield self._event(FAILED, failure)
                    return
                if time.monotonic() - last_progress_log >= self.log_interval:
                    last_progress_log = time.monotonic()
                    self._log_progress(status_name(cluster), started)
            if self.deadline is not None and time.time() >= self.deadline:
                yield self._event(FAILED, f"cluster {self.cluster_name!r} was not RUNNING before the timeout")
                return
            await asyncio.sleep(self._next_sleep())

    def _next_sleep(self) -> float:
        if self.deadline is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self.deadline - time.time()))

    def _log_progress(self, status: str, started: float) -> None:
        elapsed = time.monotonic() - started
        if self.deadline is None:
            self.log.info("Cluster %s is %s (%.0f s elapsed)", self.cluster_name, status, elapsed)
        else:
            left = max(0.0, self.deadline - time.time())
            self.log.info(
                "Cluster %s is %s (%.0f s elapsed, %.0f s left)", self.cluster_name, status, elapsed, left
            )

    def _event(self, status: str, message: str) -> TriggerEvent:
        return TriggerEvent({"status": status, "message": message, "cluster_name": self.cluster_name})
