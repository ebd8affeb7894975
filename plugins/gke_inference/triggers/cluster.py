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
# Polls start this quick and double up to poll_interval, so short provisionings are seen soon.
FIRST_POLL_INTERVAL = 1.0
# Event "status" values: success -> the cluster; failed -> terminal, do not retry; error -> retry the task.
SUCCESS, FAILED, ERROR = "success", "failed", "error"


class ClusterRunningTrigger(BaseTrigger):
    """Poll a cluster until it is RUNNING; fail at once on ERROR or DEGRADED.

    Polls start after 1 s and slow down to ``poll_interval``. Transient API errors (429, 5xx,
    dropped connections) are logged and polling goes on. Progress is logged every ``log_interval``
    seconds (or every poll when polls are slower). ``deadline`` is a Unix timestamp after which the
    trigger reports a timeout.
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
        self._hook: GKEClusterHook | None = None

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
        interval = min(FIRST_POLL_INTERVAL, self.poll_interval)
        while True:
            final_event, status = await self._check_cluster()
            if final_event is not None:
                yield final_event
                return
            if status and time.monotonic() - last_progress_log >= self.log_interval:
                last_progress_log = time.monotonic()
                self._log_progress(status, started)
            if self.deadline is not None and time.time() >= self.deadline:
                # Still provisioning is not a verdict on the cluster: a task retry waits again.
                yield self._event(ERROR, f"cluster {self.cluster_name!r} was not RUNNING before the timeout")
                return
            await asyncio.sleep(self._capped_by_deadline(interval))
            interval = min(interval * 2, self.poll_interval)

    async def _check_cluster(self) -> tuple[TriggerEvent | None, str | None]:
        """One look: a final event, or ``(None, status)`` while it may still become RUNNING.

        The status is ``None`` after a transient error.
        """
        try:
            if self._hook is None:
                self._hook = await asyncio.to_thread(self._make_hook)
            cluster = await asyncio.to_thread(self._hook.get_cluster, self.cluster_name, self.project_id)
        except api_exceptions.NotFound:
            # Gone: deleted, or a failed creation that GKE (and the sandbox) cleaned up.
            return self._event(
                FAILED,
                f"cluster {self.cluster_name!r} does not exist in {self.location}: its creation failed "
                "or it was deleted; clear the create task to create it again",
            ), None
        except Exception as exc:
            if is_transient(exc) or isinstance(exc, api_exceptions.RetryError):
                self.log.warning(
                    "Transient error reading cluster %s: %s", self.cluster_name, describe_error(exc)
                )
                return None, None
            return self._event(FAILED if is_terminal(exc) else ERROR, explain(exc)), None
        if cluster.status == ClusterStatus.RUNNING:
            summary = cluster_summary(cluster, location=self.location, project_id=self.project_id)
            return TriggerEvent({"status": SUCCESS, "cluster": summary}), None
        failure = cluster_failure(cluster)
        if failure:
            return self._event(FAILED, failure), None
        return None, status_name(cluster)

    def _capped_by_deadline(self, interval: float) -> float:
        if self.deadline is None:
            return interval
        return max(0.0, min(interval, self.deadline - time.time()))

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
