"""The prose of BENCHMARKS.md: per measurement, how it was taken and what its numbers were.

Sentences that depend on a result are built from it, so the text cannot disagree with the table.
"""

from __future__ import annotations

from collections.abc import Callable

DAG_RUN_SECTIONS = {"overhead", "critical_path", "sequential", "worker_slots", "rerun"}


def sections(results: dict) -> list[str]:
    parts: list[str] = []
    for title, key, writer in (
        ("How the DAG runs were measured", "dag_runs", _dag_runs),
        ("1. Overhead against Airflow's floor", "overhead", _overhead),
        ("2. Critical path, measured", "critical_path", _critical_path),
        ("3. Sequential baseline", "sequential", _sequential),
        ("4. Worker slots of the waits", "worker_slots", _worker_slots),
        ("5. Rerun", "rerun", _rerun),
        ("6. Parse", "parse_cost", _parse),
        ("7. Gateway and picker", "gateway_latency", _gateway),
        ("Setup (only with BENCH_INSTALL=1 / BENCH_RUN_TESTS=1)", "install", _setup),
    ):
        failure = _failure(results, key)
        body = [failure] if failure else [line for line in _safely(writer, results) if line is not None]
        if body:
            parts += [f"## {title}", "", *body, "", *_load_line(results, key)]
    return parts


def _load_line(results: dict, key: str) -> list[str]:
    measured_in = "dag_runs" if key in DAG_RUN_SECTIONS else key
    load = (results.get("load_at_start") or {}).get(measured_in)
    if load is None:
        return []
    cpus = (results.get("machine") or {}).get("cpus", "?")
    return [f"_Machine load when this measurement started: {load:.1f} (1-minute average, {cpus} CPUs)._", ""]


def _safely(writer: Callable[[dict], list[str]], results: dict) -> list[str]:
    try:
        return writer(results)
    except (KeyError, TypeError, ValueError) as error:  # a section whose results changed shape
        return [f"(this section could not be rendered from the results: {type(error).__name__}: {error})"]


def _failure(results: dict, key: str) -> str | None:
    names = (key, "dag_runs") if key in DAG_RUN_SECTIONS else (key,)
    for name in names:
        error = (results.get(name) or {}).get("error")
        if error:
            return f"**Not measured**: the measurement failed in this run: `{error}`."
    if key == "install":
        return None
    if key not in results:
        return "**Not measured** in this run."
    return None


def _retries(part: dict) -> str:
    tasks = part.get("retried_tasks") or []
    return f" **A task was retried in a run this figure comes from: {', '.join(tasks)}.**" if tasks else ""


def _dag_runs(results: dict) -> list[str]:
    runs = results["dag_runs"]
    walls = runs["walls_s"]
    return [
        "A real scheduler, not `dag.test()` (which runs one task at a time in one process): Airflow's "
        f"components as processes (LocalExecutor, parallelism {runs['parallelism']}, a triggerer) against "
        f"a sandbox with the `{runs['profile']}` timing profile, every task's state sampled from the "
        f"metadata DB every {runs['sample_interval_s']} s. On one stack: the "
        f"real DAG fresh ({walls['fresh']:.1f} s), an ensure rerun ({walls['rerun']:.1f} s), the floor DAG "
        f"{len(walls['floor'])} time(s) ({', '.join(f'{w:.1f} s' for w in walls['floor'])}), then the "
        f"real DAG fresh on a new sandbox with parallelism 1 ({walls['sequential']:.1f} s). The real DAG's "
        "runs are n=1: each costs minutes and `make bench` has 10; their spread is the history column.",
    ]


def _overhead(results: dict) -> list[str]:
    part = results["overhead"]
    per_task = sorted(part["per_task_overhead_s"].items(), key=lambda item: -item[1])
    return [
        "The floor DAG (`bench/floor_dag.py`) is generated from the real DAG's shape: same task ids, "
        "TaskGroups, edges and trigger rules; each task an EmptyOperator (the scheduler marks it "
        "successful without a worker), except that each task that deferred in the real run defers on a "
        "TimeDeltaTrigger for as long, each branch follows what the real run followed, and each task "
        "that skipped itself skips. It imports nothing from gke_inference.",
        "",
        f"DAG wall {part['dag_wall_s']:.1f} s against floor "
        f"{', '.join(f'{w:.1f} s' for w in part['floor_walls_s'])}.{_retries(part)} Per task, running "
        "seconds above the floor's (the slowest):",
        "",
        *(f"- `{task}`: {seconds:.1f} s" for task, seconds in per_task[:8]),
    ]


def _critical_path(results: dict) -> list[str]:
    part = results["critical_path"]
    chain = " -> ".join(f"`{task}` {seconds:.1f} s" for task, seconds in part["critical_path_tasks"])
    factor = part.get("real_gke_factor")
    real = (
        f"At real-GKE scale (x{factor:g}, the profile's `real_gke_factor`) the critical path is "
        f"{part['real_scale_critical_path_s']:.0f} s and the same {part['overhead_s']:.1f} s of overhead "
        f"would add {100 * part['overhead_share_at_real_scale']:.1f}%."
        if factor
        else "The profile is not a scaled copy of real GKE: no real-scale figure."
    )
    unclaimed = part.get("unclaimed_waits") or []
    return [
        "From the twin's own wait log (`/waits` on the sandbox's admin endpoint: when each operation "
        "began and finished, each pod was first seen and became Ready, each Gateway was first seen and "
        "became Programmed), not the profile's constants. Each wait belongs to the task that waits for it; "
        "the critical path is the heaviest chain of those waits along the DAG's edges.",
        "",
        f"- critical path **{part['measured_critical_path_s']:.1f} s**: {chain}",
        f"- DAG wall {part['dag_wall_s']:.1f} s; overhead (wall - critical path) {part['overhead_s']:.1f} s",
        f"- {real}{_retries(part)}",
        *([f"- waits on no task's chain: {', '.join(unclaimed)}"] if unclaimed else []),
    ]


def _sequential(results: dict) -> list[str]:
    part = results["sequential"]
    return [
        f"The same DAG, fresh, with executor parallelism 1 and one active task per DAG: "
        f"{part['sequential_wall_s']:.1f} s, against {part['parallel_wall_s']:.1f} s with parallelism "
        f"{results['dag_runs']['parallelism']}.{_retries(part)}",
    ]


def _worker_slots(results: dict) -> list[str]:
    part = results["worker_slots"]
    rows = [
        f"| `{task}` | {t['running_s']:.1f} s | {t['running_before_deferral_s']:.1f} s | {t['deferred_s']:.1f} s |"
        for task, t in sorted(part["waiting_tasks"].items())
    ]
    return [
        "From the fresh run: the DAG's sensors. Seconds seen running hold a worker slot (before the first "
        "deferral, and the resume); seconds deferred hold none. Each stretch is known to within the "
        f"{part['sample_interval_s']} s sampling interval.",
        "",
        "| wait | running (slot held) | of which before deferring | deferred (no slot) |",
        "|---|---|---|---|",
        *rows,
        f"| **total** | **{part['slot_seconds_held']:.1f} s** | **{part['slot_seconds_before_deferral']:.1f} s** "
        f"| **{part['deferred_seconds']:.1f} s** |",
        *([_retries(part).strip()] if part.get("retried_tasks") else []),
    ]


def _rerun(results: dict) -> list[str]:
    part = results["rerun"]
    created = ", ".join(f"`{c}`" for c in part["created"]) or "nothing"
    return [
        "An ensure-mode run on the finished environment, right after the fresh run. Creates are counted "
        "from the sandbox's request log (Service Usage enables, Compute/Container inserts, Kubernetes "
        "POSTs or applies answered 201).",
        "",
        f"- rerun {part['rerun_wall_s']:.1f} s against floor {', '.join(f'{w:.1f} s' for w in part['floor_walls_s'])}",
        f"- {part['rerun_requests']} requests to the sandbox; created **{created}**.{_retries(part)}",
    ]


def _parse(results: dict) -> list[str]:
    parse = results["parse_cost"]
    from bench import parse_cost

    if hasattr(parse_cost, "markdown_section"):
        return [parse_cost.markdown_section(parse).rstrip()]
    return [
        "`bench/parse_cost.py`: the figures are in the table; the raw "
        "numbers in `bench/results.json` under `parse_cost`."
    ]


def _gateway(results: dict) -> list[str]:
    from bench import gateway

    latency, pickers = results.get("gateway_latency") or {}, results.get("gateway_pickers") or {}
    if hasattr(gateway, "markdown_section"):
        return [gateway.markdown_section(latency, pickers).rstrip()]
    return ["The figures are in the table; the raw numbers in `bench/results.json`."]


def _setup(results: dict) -> list[str]:
    install, tests = results.get("install") or {}, results.get("make_test") or {}
    lines = []
    if install.get("skipped") is False:
        lines.append(
            f"Cold install: `uv pip sync` of the lock ({install['packages']} packages) into a fresh venv "
            f"with an empty uv cache: {install['cold_s']:.0f} s; again with that cache warm: "
            f"{install['warm_s']:.0f} s."
        )
    if tests.get("measured"):
        how = (
            "carried forward from an earlier run" if tests.get("carried_forward") else "measured in this run"
        )
        lines.append(
            f"`make test`: {tests['seconds'] / 60:.1f} min ({how}, at {tests['measured_at']}; "
            f"`{tests['summary']}`), {100 * tests['ratio_to_budget']:.0f}% of the 15-minute budget."
        )
    return lines
