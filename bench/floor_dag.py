"""Airflow's floor for the DAG: a DAG file generated from the real DAG's shape and its measured run.

Same task ids, TaskGroups, dependencies and trigger rules as the real DAG; every task does nothing
the DAG's own code does:
- a task that deferred in the real run defers on a TimeDeltaTrigger for as long as the real one was
  deferred (started from the triggerer when the real one is), then resumes;
- a branch or short-circuit that ran follows the downstream tasks the real run followed;
- a task that skipped itself in the real run (seen queued or running, then skipped) raises a skip;
- every other task is an EmptyOperator (which the scheduler marks successful without a worker:
  that is Airflow's own floor for a task that does nothing).
So the floor run skips what the real run skipped, waits what it waited, and costs what Airflow
costs to schedule the same graph. The generated file imports nothing from gke_inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.timeline import DEFERRED, Timeline

FLOOR_SUFFIX = "_floor"


@dataclass(frozen=True)
class TaskShape:
    task_id: str
    label: str  # the task id inside its group
    group: str | None  # the full id of its TaskGroup, None at the DAG's root
    trigger_rule: str
    skips_downstream: bool  # a branch or short-circuit (Airflow's SkipMixin)
    sensor: bool
    start_from_trigger: bool


@dataclass(frozen=True)
class DagShape:
    dag_id: str
    groups: tuple[tuple[str, str, str | None], ...]  # (full id, label, parent's full id), parents first
    tasks: tuple[TaskShape, ...]
    edges: tuple[tuple[str, str], ...]

    def downstream(self, task_id: str) -> list[str]:
        return sorted(down for up, down in self.edges if up == task_id)


def shape_of(dag) -> DagShape:  # noqa: ANN001 - an airflow.sdk DAG
    """The real DAG's structure, nothing of its operators' code."""
    groups: dict[str, tuple[str, str, str | None]] = {}
    tasks = []
    for task in dag.tasks:
        group = task.task_group
        chain = []
        while group is not None and group.group_id is not None:
            chain.append(group)
            group = group.parent_group
        for member in reversed(chain):
            parent = member.parent_group.group_id if member.parent_group else None
            groups.setdefault(member.group_id, (member.group_id, member.label, parent))
        tasks.append(
            TaskShape(
                task_id=task.task_id,
                label=task.label,
                group=chain[0].group_id if chain else None,
                trigger_rule=str(getattr(task.trigger_rule, "value", task.trigger_rule)),
                skips_downstream=any(k.__name__ == "SkipMixin" for k in type(task).__mro__),
                sensor=any(k.__name__ == "BaseSensorOperator" for k in type(task).__mro__),
                start_from_trigger=bool(getattr(task, "start_from_trigger", False)),
            )
        )
    edges = tuple(sorted((task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids))
    return DagShape(dag.dag_id, tuple(groups.values()), tuple(tasks), edges)


def behaviours(shape: DagShape, timeline: Timeline) -> dict[str, tuple]:
    """What each floor task does, from the real run: ("empty",), ("skip",), ("wait", seconds,
    from_trigger) or ("branch", [followed downstream ids])."""
    final = timeline.final_states()
    chosen: dict[str, tuple] = {}
    for task in shape.tasks:
        seen = {state for _, state in timeline.transitions.get(task.task_id, [])}
        if DEFERRED in seen:
            chosen[task.task_id] = (
                "wait",
                round(timeline.seconds_in(task.task_id, DEFERRED), 3),
                task.start_from_trigger,
            )
        elif task.skips_downstream and final.get(task.task_id) == "success":
            followed = [d for d in shape.downstream(task.task_id) if final.get(d) != "skipped"]
            chosen[task.task_id] = ("branch", followed)
        elif final.get(task.task_id) == "skipped" and seen & {"queued", "running"}:
            chosen[task.task_id] = ("skip",)
        else:
            chosen[task.task_id] = ("empty",)
    return chosen


def source(shape: DagShape, chosen: dict[str, tuple], measured_run: str) -> str:
    tasks = [(t.task_id, t.label, t.group, *_kind(chosen[t.task_id]), t.trigger_rule) for t in shape.tasks]
    return _TEMPLATE.format(
        source_dag=shape.dag_id,
        measured_run=measured_run,
        dag_id=shape.dag_id + FLOOR_SUFFIX,
        groups=_rows(shape.groups),
        tasks=_rows(tasks),
        edges=_rows(shape.edges),
    )


def write(folder: Path, shape: DagShape, chosen: dict[str, tuple], measured_run: str) -> Path:
    path = folder / f"{shape.dag_id}{FLOOR_SUFFIX}.py"
    path.write_text(source(shape, chosen, measured_run))
    return path


def _kind(behaviour: tuple) -> tuple[str, object]:
    kind, *args = behaviour
    if kind == "wait":
        seconds, from_trigger = args
        return ("wait_from_trigger" if from_trigger else "wait"), seconds
    return kind, (args[0] if args else None)


def _rows(rows) -> str:  # noqa: ANN001
    return "".join(f"    {row!r},\n" for row in rows)


_TEMPLATE = '''"""Airflow's floor for {source_dag}, generated by bench/floor_dag.py from its shape and its run
{measured_run}: same tasks, groups, dependencies and trigger rules; no task does the DAG's work."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator, TaskGroup
from airflow.sdk.exceptions import AirflowSkipException
from airflow.triggers.base import StartTriggerArgs


class FloorWait(BaseOperator):
    """Defers for as long as the real task was deferred, then resumes: no hook, no client."""

    def __init__(self, *, seconds, from_trigger=False, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds
        if from_trigger:
            self.start_from_trigger = True
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="airflow.providers.standard.triggers.temporal.TimeDeltaTrigger",
                trigger_kwargs={{"delta": timedelta(seconds=seconds)}},
                next_method="execute_complete",
                next_kwargs=None,
                timeout=None,
            )

    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)), method_name="execute_complete")

    def execute_complete(self, context, event=None):
        return None


def skip():
    raise AirflowSkipException("this task skipped itself in the measured run")


def follow(*task_ids):
    return list(task_ids)


GROUPS = [
{groups}]
TASKS = [
{tasks}]
EDGES = [
{edges}]

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={{"retries": 0}},
) as dag:
    groups = {{}}
    for group_id, label, parent in GROUPS:
        groups[group_id] = TaskGroup(label, parent_group=groups.get(parent))
    tasks = {{}}
    for task_id, label, group, kind, argument, trigger_rule in TASKS:
        common = {{"task_id": label, "task_group": groups.get(group), "trigger_rule": trigger_rule}}
        if kind in ("wait", "wait_from_trigger"):
            tasks[task_id] = FloorWait(seconds=argument, from_trigger=kind == "wait_from_trigger", **common)
        elif kind == "branch":
            tasks[task_id] = BranchPythonOperator(python_callable=follow, op_args=argument, **common)
        elif kind == "skip":
            tasks[task_id] = PythonOperator(python_callable=skip, **common)
        else:
            tasks[task_id] = EmptyOperator(**common)
    for upstream, downstream in EDGES:
        tasks[upstream] >> tasks[downstream]
'''
