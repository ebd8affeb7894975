"""Critical path, measured: the longest chain of intrinsic waits along the DAG's dependencies.

The waits come from the twin's own wait log (sandbox/core/waits.py, served at the admin
endpoint's /waits): when each operation began and finished, when each pod was first seen and
became Ready, when each Gateway was first seen and became Programmed. Each wait belongs to the
task that waits for it (rules below, by the run's object names); a task's intrinsic wait is the
span of its waits (first began to last ended). The critical path is the heaviest chain of those
spans along the DAG's edges: what no orchestration could shorten.

Figures: wall / measured critical path; and what the overhead (wall - critical path) would add
at real-GKE scale: overhead / (critical path x the profile's real_gke_factor).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.floor_dag import DagShape
from bench.timeline import RunRecord
from sandbox.core.profiles import Profile

Wait = dict
Rule = tuple[str, Callable[[Wait], bool]]


def rules(params: dict) -> tuple[Rule, ...]:
    """Which task waits for which of the twin's waits, by the names the run used (the DAG's params)."""

    def operation_on(suffix: str) -> Callable[[Wait], bool]:
        return lambda w: w["kind"] == "operation" and str(w.get("target", "")).endswith(suffix)

    def pods_of(app: str) -> Callable[[Wait], bool]:
        return lambda w: w["kind"] == "pod" and w.get("app") == app

    return (
        # Service Usage operations target the services ("compute.googleapis.com,..."), not a path.
        (
            "project_network.enable_apis",
            lambda w: w["kind"] == "operation" and "/" not in str(w.get("target", "")),
        ),
        ("project_network.ensure_network", operation_on(f"/networks/{params['network_name']}")),
        ("project_network.ensure_node_subnet", operation_on(f"/subnetworks/{params['subnet_name']}")),
        ("project_network.ensure_proxy_subnet", operation_on(f"/subnetworks/{params['proxy_subnet_name']}")),
        (
            "cluster.wait_cluster_running",
            lambda w: w["kind"] == "operation" and w["name"] == "CREATE_CLUSTER",
        ),
        ("verify.wait_model_pods_ready", pods_of(params["model_app_label"])),
        (
            "verify.wait_gateway_address",
            lambda w: w["kind"] == "gateway" and w["name"].endswith(f"/{params['gateway_name']}"),
        ),
        ("body_routing.wait_body_based_router", pods_of("body-based-router")),
    )


def attribute(waits: list[Wait], task_rules: tuple[Rule, ...]) -> tuple[dict[str, float], list[Wait]]:
    """Each task's intrinsic wait (span of its waits), and the waits no rule claimed."""
    claimed: dict[str, list[Wait]] = {}
    unclaimed = []
    for wait in waits:
        owner = next((task for task, matches in task_rules if matches(wait)), None)
        if owner is None:
            unclaimed.append(wait)
        else:
            claimed.setdefault(owner, []).append(wait)
    spans = {
        task: max(w["ended"] for w in owned) - min(w["began"] for w in owned)
        for task, owned in claimed.items()
    }
    return spans, unclaimed


def longest_chain(shape: DagShape, weights: dict[str, float]) -> tuple[float, list[str]]:
    """The heaviest path through the DAG with these task weights (a DAG: topological order)."""
    upstream: dict[str, list[str]] = {t.task_id: [] for t in shape.tasks}
    for up, down in shape.edges:
        upstream[down].append(up)
    best: dict[str, tuple[float, list[str]]] = {}

    def heaviest_to(task: str) -> tuple[float, list[str]]:
        if task not in best:
            before = max((heaviest_to(up) for up in upstream[task]), default=(0.0, []), key=lambda c: c[0])
            best[task] = (before[0] + weights.get(task, 0.0), [*before[1], task])
        return best[task]

    total, path = max((heaviest_to(t.task_id) for t in shape.tasks), key=lambda c: c[0])
    return total, [task for task in path if weights.get(task)]


def measure(run: RunRecord, waits: list[Wait], shape: DagShape, params: dict, profile: Profile) -> dict:
    spans, unclaimed = attribute(waits, rules(params))
    critical, path = longest_chain(shape, spans)
    overhead = run.wall_seconds - critical
    factor = profile.real_gke_factor
    return {
        "profile": profile.name,
        "dag_wall_s": run.wall_seconds,
        "measured_critical_path_s": critical,
        "critical_path_tasks": [[task, spans[task]] for task in path],  # in order (JSON sorts dicts)
        "task_waits_s": spans,
        "unclaimed_waits": [f"{w['kind']} {w['name']}" for w in unclaimed],
        "ratio_to_critical_path": run.wall_seconds / critical if critical else None,
        "overhead_s": overhead,
        "real_gke_factor": factor,
        "real_scale_critical_path_s": critical * factor if factor else None,
        "overhead_share_at_real_scale": overhead / (critical * factor) if factor and critical else None,
        "retried_tasks": run.retried(),
    }
