"""Worker slots: how long the waiting tasks hold a worker slot, against how long they wait.

A waiting task is one seen deferred. The time it is seen running (its first look before deferring,
and the short resume after the trigger fires) holds a slot; the time it is seen deferred holds
none, only the triggerer's coroutine. Sampled from the metadata DB at the run's sample interval.
"""

from __future__ import annotations

from bench.timeline import DEFERRED, RUNNING, RunRecord


def running_before_deferral(run: RunRecord, task: str) -> float:
    """Seconds seen running before the task first deferred (starting the task and building its trigger)."""
    changes = run.timeline.transitions.get(task, [])
    total = 0.0
    for (start, state), (end, following) in zip(changes, changes[1:], strict=False):
        if state == RUNNING:
            total += end - start
        if following == DEFERRED:
            break
    return total


def measure(run: RunRecord) -> dict:
    waiting = run.timeline.tasks_ever_in(DEFERRED)
    per_task = {
        task: {
            "running_s": run.timeline.seconds_in(task, RUNNING),
            "running_before_deferral_s": running_before_deferral(run, task),
            "deferred_s": run.timeline.seconds_in(task, DEFERRED),
        }
        for task in waiting
    }
    held = sum(t["running_s"] for t in per_task.values())
    waited = sum(t["deferred_s"] for t in per_task.values())
    return {
        "sample_interval_s": run.timeline.interval,
        "waiting_tasks": per_task,
        "slot_seconds_held": held,
        "deferred_seconds": waited,
        "ratio": held / waited if waited else float("inf"),
    }
