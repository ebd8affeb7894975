"""Worker slots: how long the four waits (the DAG's sensors) hold a worker slot, against how long
they are deferred.

Running stretches hold a slot: before the first deferral (starting the task, building its trigger;
none when the sensor starts from the triggerer) and the resume after the trigger fired. Deferred
time holds none, only the triggerer's coroutine. Sampled from the metadata DB at the run's interval.
"""

from __future__ import annotations

from bench.stats import spread
from bench.timeline import DEFERRED, RUNNING, RunRecord


def running_before_deferral(run: RunRecord, task: str) -> float:
    """Seconds seen running before the task first deferred."""
    changes = run.timeline.transitions.get(task, [])
    total = 0.0
    for (start, state), (end, following) in zip(changes, changes[1:], strict=False):
        if state == RUNNING:
            total += end - start
        if following == DEFERRED:
            break
    return total


def measure(run: RunRecord, sensors: list[str]) -> dict:
    waiting = [task for task in run.timeline.tasks_ever_in(DEFERRED) if task in sensors]
    per_task = {
        task: {
            "running_s": run.timeline.seconds_in(task, RUNNING),
            "running_before_deferral_s": running_before_deferral(run, task),
            "deferred_s": run.timeline.seconds_in(task, DEFERRED),
        }
        for task in waiting
    }
    held = sum(t["running_s"] for t in per_task.values())
    before = sum(t["running_before_deferral_s"] for t in per_task.values())
    waited = sum(t["deferred_s"] for t in per_task.values())
    return {
        "sample_interval_s": run.timeline.interval,
        "waiting_tasks": per_task,
        "slot_seconds_held": held,
        "slot_seconds_before_deferral": before,
        "deferred_seconds": waited,
        "ratio": spread([held / waited] if waited else []),
        "pre_deferral_ratio": spread([before / waited] if waited else []),
        "retried_tasks": [t for t in run.retried() if t in per_task],
    }
