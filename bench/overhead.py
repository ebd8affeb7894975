"""Orchestration overhead against Airflow's floor, the sequential baseline, and the rerun.

All from runs on one stack and one sandbox (bench/dag_runs.py): the real DAG's fresh run, the floor
DAG's runs (bench/floor_dag.py: same graph, no work, the same waits), the real DAG again with
executor parallelism 1, and an ensure-mode rerun of the finished environment.
"""

from __future__ import annotations

from bench.stats import percentile, spread
from bench.timeline import RUNNING, RunRecord
from sandbox.core.faults import creating_requests


def ran(run: RunRecord) -> list[str]:
    """Tasks seen running (holding a worker) in the run."""
    return run.timeline.tasks_ever_in(RUNNING)


def per_task_overhead(real: RunRecord, floor: RunRecord) -> dict[str, float]:
    """Each task's running seconds above its floor twin's (an EmptyOperator never runs: 0 s)."""
    return {
        task: real.timeline.seconds_in(task, RUNNING) - floor.timeline.seconds_in(task, RUNNING)
        for task in ran(real)
    }


def against_floor(real: RunRecord, floors: list[RunRecord]) -> dict:
    ratios = [(real.wall_seconds - f.wall_seconds) / f.wall_seconds for f in floors]
    per_task = per_task_overhead(real, floors[0])
    above = list(per_task.values())
    return {
        "dag_wall_s": real.wall_seconds,
        "floor_walls_s": [f.wall_seconds for f in floors],
        "ratio": spread(ratios),
        "per_task_overhead_s": per_task,
        "per_task_median_s": spread([percentile(above, 0.5)]),
        "per_task_p90_s": spread([percentile(above, 0.9)]),
        "retried_tasks": sorted({t for run in (real, *floors) for t in run.retried()}),
    }


def sequential(parallel: RunRecord, one_at_a_time: RunRecord) -> dict:
    return {
        "parallel_wall_s": parallel.wall_seconds,
        "sequential_wall_s": one_at_a_time.wall_seconds,
        "ratio": spread([parallel.wall_seconds / one_at_a_time.wall_seconds]),
        "retried_tasks": sorted(set(parallel.retried()) | set(one_at_a_time.retried())),
    }


def rerun(again: RunRecord, floors: list[RunRecord], rerun_requests: list[dict]) -> dict:
    created = creating_requests(rerun_requests)
    return {
        "rerun_wall_s": again.wall_seconds,
        "floor_walls_s": [f.wall_seconds for f in floors],
        "ratio_to_floor": spread([again.wall_seconds / f.wall_seconds for f in floors]),
        "rerun_requests": len(rerun_requests),
        "creates": spread([len(created)]),
        "created": created,
        "retried_tasks": again.retried(),
    }
