"""The cost guard: a built environment is torn down when nobody will use it (issue 15, section 3).

Two reasons, decided by one gate at the start of the cleanup teardown group:
* ``keep_for_hours`` after a successful verify, waited for by ``KeepForOperator`` (deferred: the
  wait holds a triggerer coroutine, not a worker slot);
* a failed build with ``on_failure`` = teardown (the plan's effective value: teardown for scheduled
  runs, keep for manual ones unless asked).
The gate only opens the group; the run's state is still decided by the build (run_report stays a
leaf), so a build that failed leaves the run failed even when the cleanup succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, timezone
from airflow.sdk.exceptions import AirflowSkipException

from gke_inference.operators.plan import RelayPlanOperator


class KeepForOperator(BaseOperator):
    """Wait ``hours`` (the plan's keep_for_hours) deferred, then succeed; 0 keeps the environment
    (the task is skipped and the cleanup gate does not open for it).

    Airflow 3.3 does not apply execution_timeout to a deferred wait (task_runner.py: "TODO: handle
    timeout in case of deferral"), so a wait of hours is not cut short by the DAG's 30 minutes.
    """

    template_fields: Sequence[str] = ("hours",)
    ui_color = "#fef7e0"

    def __init__(self, *, hours: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hours = hours

    def execute(self, context) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        hours = float(self.hours)
        if hours <= 0:
            raise AirflowSkipException("keep_for_hours is 0: the environment stays up")
        until = timezone.utcnow() + timedelta(hours=hours)
        self.log.info("Keeping the environment for %s hours, until %s; then it is torn down", hours, until)
        self.defer(trigger=DateTimeTrigger(moment=until), method_name="execute_complete")

    def execute_complete(self, context, event: Any = None) -> None:
        self.log.info("keep_for_hours %s has passed: tearing the environment down", self.hours)


class CostGuardGateOperator(RelayPlanOperator):
    """Open the cleanup group (return the plan) or skip it, once every build task is done.

    :param plan: the whole plan (``plan_run.output``); its ``on_failure`` is the effective policy.
    :param build_task_ids: the tasks whose failure means the build failed (its own direct upstreams
        with trigger rule all_done, so nothing is still creating when the deletes start).
    :param keep_for_task_id: the KeepForOperator task; its success means the time is up.
    """

    def __init__(self, *, build_task_ids: Sequence[str], keep_for_task_id: str, **kwargs: Any) -> None:
        super().__init__(trigger_rule="all_done", **kwargs)
        self.build_task_ids = list(build_task_ids)
        self.keep_for_task_id = keep_for_task_id

    def execute(self, context) -> dict[str, Any]:
        plan = dict(self.plan)
        reason = self.teardown_reason(self._states(context), plan)
        if reason is None:
            raise AirflowSkipException("Nothing to tear down: the environment stays")
        self.log.info("Tearing down what this DAG owns: %s", reason)
        return plan

    def teardown_reason(self, states: dict[str, Any], plan: dict[str, Any]) -> str | None:
        if states.get(self.keep_for_task_id) == "success":
            return f"keep_for_hours ({plan['keep_for_hours']}) has passed"
        failed = sorted(task_id for task_id in self.build_task_ids if states.get(task_id) == "failed")
        if not failed:
            return None
        if plan["on_failure"] != "teardown":
            self.log.info("The build failed (%s); on_failure is keep: left for debugging", ", ".join(failed))
            return None
        return f"the build failed ({', '.join(failed)}) and on_failure is teardown"

    def _states(self, context) -> dict[str, Any]:
        """This run's task states, through the Task SDK's public API (the Execution API's /states)."""
        ti = context["ti"]
        watched = [*self.build_task_ids, self.keep_for_task_id]
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=watched, run_ids=[ti.run_id])
        return {
            task_id: str(state) if state else None for task_id, state in states.get(ti.run_id, {}).items()
        }
