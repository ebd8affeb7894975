"""Worker slots: how long the waiting tasks hold a worker slot, against how long they wait.

A waiting task is one seen deferred. The time it is seen running (its first look before deferring,
and the short resume after the trigger fires) holds a slot; the time it is seen deferred holds
none, only the triggerer's coroutine. Sampled from the metadata DB at the run's sample interval.
"""

from __future__ import annotations

from bench.timeline import DEFERRED, RUNNING, RunRecord


def measure(run: RunRecord) -> dict:
    waiting = run.timeline.tasks_ever_in(DEFERRED)
    per_task = {
        task: {
            "running_s": run.timeline.seconds_in(task, RUNNING),
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
