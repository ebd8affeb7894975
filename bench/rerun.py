"""Rerun: a run on the finished environment against the fresh run, and what the rerun created.

Creates are counted from the sandbox's request log, as the whole-DAG tests do: Service Usage
enables, Compute and Container inserts, and Kubernetes creates (a POST, or a server-side apply
that answered 201 Created).
"""

from __future__ import annotations

import re

from bench.timeline import RunRecord

GCP_APIS = {"compute", "container", "serviceusage"}
GCP_CREATE = re.compile(r"(:enable|:batchEnable|/networks|/subnetworks|/clusters)$")


def creates(entries: list[dict]) -> list[str]:
    found = []
    for entry in entries:
        if entry["api"] in GCP_APIS:
            if entry["method"] == "POST" and GCP_CREATE.search(entry["path"]):
                found.append(f"{entry['method']} {entry['path']}")
        elif entry["api"] == "kube" and (entry["method"] == "POST" or entry["status"] == 201):
            found.append(f"{entry['method']} {entry['path']} -> {entry['status']}")
    return found


def measure(fresh: RunRecord, rerun: RunRecord, rerun_requests: list[dict]) -> dict:
    created = creates(rerun_requests)
    return {
        "fresh_wall_s": fresh.wall_seconds,
        "rerun_wall_s": rerun.wall_seconds,
        "ratio": rerun.wall_seconds / fresh.wall_seconds,
        "rerun_requests": len(rerun_requests),
        "rerun_creates": len(created),
        "rerun_created": created,
    }
