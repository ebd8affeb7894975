"""Rerun: a run on the finished environment against the fresh run, and what the rerun created.

Creates are counted from the sandbox's request log, as the whole-DAG tests do: Service Usage
enables, Compute and Container inserts, and Kubernetes creates (a POST, or a server-side apply
that answered 201 Created).
"""

from __future__ import annotations

from bench.timeline import RunRecord
from sandbox.core.faults import creating_requests


def measure(fresh: RunRecord, rerun: RunRecord, rerun_requests: list[dict]) -> dict:
    created = creating_requests(rerun_requests)
    return {
        "fresh_wall_s": fresh.wall_seconds,
        "rerun_wall_s": rerun.wall_seconds,
        "ratio": rerun.wall_seconds / fresh.wall_seconds,
        "rerun_requests": len(rerun_requests),
        "rerun_creates": len(created),
        "rerun_created": created,
    }
