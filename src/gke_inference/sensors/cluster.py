"""Tutorial 2.1: wait until the cluster is RUNNING (the tutorial's ``until ... grep RUNNING`` loop).

The hook and trigger are imported where used, to keep DAG parsing free of the Google client libraries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator

from gke_inference.arguments import check_when_built, seconds
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast, failure
from gke_inference.links import ClusterConsoleLink

TRIGGER_CLASSPATH = "gke_inference.triggers.cluster.ClusterRunningTrigger"


class ClusterRunningSensor(ClusterTaskMixin, BaseSensorOperator):
    """Wait, deferred, for the cluster to be RUNNING; fail at once if it goes to ERROR or DEGRADED.
    The wait starts in the triggerer (``start_from_trigger``); ``execute`` looks once and defers
    where nothing starts it there (``dag.test``).

    :param tutorial_step: named in failure messages.
    XCom: ``{"name", "location", "project_id", "status", "current_master_version", "endpoint",
    "self_link"}``; ``current_master_version`` chooses the CRD set in tutorial 2.2.
    """

    operator_extra_links = (ClusterConsoleLink(),)
    template_fields: Sequence[str] = (
        *ClusterTaskMixin.cluster_template_fields,
        "wait_timeout",
        "poll_interval",
    )

    def __init__(
        self,
        *,
        timeout: float = 1800,
        poll_interval: float = 15,
        tutorial_step: str = "2.1",
        **kwargs: Any,
    ) -> None:
        # `timeout` may arrive at run time (plan["cluster_timeout"]), so it is kept apart from
        # BaseSensorOperator.timeout, which must be a number when the DAG is parsed.
        super().__init__(**kwargs)
        check_when_built(seconds, timeout, "timeout")
        check_when_built(seconds, poll_interval, "poll_interval")
        self.wait_timeout = timeout
        self.poll_interval = poll_interval
        self.tutorial_step = tutorial_step
        self._start_in_triggerer()

    def _start_in_triggerer(self) -> None:
        """The scheduler hands the first wait to the triggerer (no worker before it defers);
        ``execute`` still defers by itself where nothing does that (``dag.test``)."""
        from gke_inference.triggers.polling import start_trigger_args

        self.start_trigger_args = start_trigger_args(self, TRIGGER_CLASSPATH)
        self.start_from_trigger = self.start_trigger_args is not None

    @property
    def what(self) -> str:
        return f"Waiting for the cluster (tutorial {self.tutorial_step})"

    def execute(self, context: Any) -> dict | None:
        from gke_inference.triggers.cluster import ClusterRunningTrigger, assess_cluster

        with failing_fast(self.what):
            timeout = seconds(self.wait_timeout, "timeout")
            poll_interval = seconds(self.poll_interval, "poll_interval")
            hook = self.cluster_target.gke_hook()
            target = replace(self.cluster_target, project_id=hook.resolve_project_id(self.project_id))
            verdict = assess_cluster(hook, target.cluster_name, target.location, target.project_id)
        if verdict.done:
            return verdict.result
        if verdict.failure:
            raise failure(self.what, verdict.failure)
        self.log.info(
            "Cluster %s is %s; deferring for up to %.0f s", self.cluster_name, verdict.state, timeout
        )
        started = time.time()
        self.defer(
            trigger=ClusterRunningTrigger(
                **target.to_dict(),
                started_at=started,
                deadline=started + timeout,
                poll_interval=poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout),
        )
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict:
        from gke_inference.triggers.polling import FAILED, SUCCESS

        status = event.get("status")
        if status == SUCCESS:
            cluster = event["result"]
            self.log.info(
                "Cluster %s is RUNNING, version %s", cluster["name"], cluster["current_master_version"]
            )
            return cluster
        message = event.get("message", "no message")
        if status == FAILED:
            raise failure(self.what, message)
        # A timeout is no verdict on the cluster (still provisioning), an error none either: retry.
        raise RuntimeError(f"Waiting for cluster {self.cluster_name!r} failed, will retry: {message}")
