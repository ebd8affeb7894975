"""The prose of BENCHMARKS.md: per measurement, how it was taken and what the numbers say.

Sentences that depend on a result are built from it, so the text cannot disagree with the table.
"""

from __future__ import annotations


def sections(results: dict) -> list[str]:
    parts: list[str] = []
    for title, key, writer in (
        ("1. Parse cost", "parse_cost", _parse_cost),
        ("2. Critical path", "critical_path", _critical_path),
        ("3. Worker slots", "worker_slots", _worker_slots),
        ("4. Rerun", "rerun", _rerun),
        ("5. Gateway", "gateway_latency", _gateway),
        ("6. Setup", "install", _setup),
    ):
        parts += [f"## {title}", ""]
        failure = _failure(results, key)
        parts += [failure, ""] if failure else [*writer(results), ""]
    return parts


def misses(results: dict, missed_labels: list[str]) -> list[str]:
    """One plain line per missed target: what the run shows is in the way."""
    causes = {
        "1.": lambda: "the DAG file adds {:.2f} s to a cold parse that costs a one-task DAG {:.2f} s.".format(
            results["parse_cost"]["cold"]["dag_median_s"]
            - results["parse_cost"]["cold"]["one_task_median_s"],
            results["parse_cost"]["cold"]["one_task_median_s"],
        ),
        "2a.": lambda: (
            "the tutorial tasks ran {:.0f} s in all (task start and imports per try) against "
            "{:.1f} s of intrinsic waits on the critical path.".format(
                results["critical_path"]["tutorial_tasks_running_s"],
                results["critical_path"]["intrinsic_critical_path_s"],
            )
        ),
        "2b.": lambda: (
            "parallel branches save only what runs beside the critical chain; the chain's own "
            "task starts are paid one after another."
        ),
        "3.": lambda: (
            "the sensors ran {:.1f} s before deferring (task start, then the trigger module's "
            "imports) against {:.1f} s deferred.".format(
                sum(
                    t["running_before_deferral_s"] for t in results["worker_slots"]["waiting_tasks"].values()
                ),
                results["worker_slots"]["deferred_seconds"],
            )
        ),
        "4a.": lambda: (
            "the rerun still starts every task; their start cost, not the waits, is most of a run."
        ),
        "5a.": lambda: "the proxy shares its process and the machine's CPUs with the load generator.",
        "5b.": lambda: (
            "the EPP still sent the slow replica {:.0f}% of the requests (round-robin {:.0f}%); "
            "while more than 10% go to it, the p90 is one of its answers.".format(
                100 * results["gateway_pickers"]["epp"]["slow_pod_share"],
                100 * results["gateway_pickers"]["round_robin"]["slow_pod_share"],
            )
        ),
        "6b.": lambda: "the suite takes longer than its budget.",
    }
    lines = []
    for label in missed_labels:
        number = label.split(" ", 1)[0]
        lines.append(f"- **Missed, {label}**: {causes[number]() if number in causes else ''}")
    machine = results.get("machine", {})
    if lines and machine.get("load_avg_1m", 0) > (machine.get("cpus") or 1):
        lines.append(
            f"- The machine was busy with other work when this run started (load {machine['load_avg_1m']:.1f} "
            f"on {machine['cpus']} CPUs): task starts and cold parses are CPU-bound and slower for it; the "
            "ratios of two things measured side by side are less affected than the absolute seconds, "
            "but figures near their target can land on either side from run to run (see the previous "
            "run's column)."
        )
    return ["## Misses", "", *lines, ""] if lines else []


def _failure(results: dict, key: str) -> str | None:
    # The scheduler runs feed sections 2-4; a failure there is recorded under "dag_runs".
    for name in (key, "dag_runs") if key in {"critical_path", "worker_slots", "rerun"} else (key,):
        error = (results.get(name) or {}).get("error")
        if error:
            return f"**Not measured**: the measurement failed in this run: `{error}`."
    if key not in results:
        return "**Not measured** in this run."
    return None


def _parse_cost(results: dict) -> list[str]:
    parse = results["parse_cost"]
    cold, warm = parse["cold"], parse["airflow_preloaded"]
    return [
        "Each parse runs `DagBag(<file>)` in a fresh interpreter (no module cached from an earlier parse), "
        f"{parse['repeats']} times per side, interleaved; the figure is the ratio of the medians. The "
        "headline figure is *cold*: the clock starts before `import airflow`, so both sides pay Airflow's "
        "own import cost alike. The second figure preloads, outside the clock and on both sides, every "
        f"`airflow.*` module ({warm['airflow_modules']}) the DAG's parse loads, leaving only the project's "
        "modules and the DAG's construction inside it.",
        "",
        "| | this DAG (median) | one-task DAG (median) | ratio |",
        "|---|---|---|---|",
        f"| cold interpreter | {cold['dag_median_s']:.2f} s | {cold['one_task_median_s']:.2f} s | "
        f"{cold['ratio']:.3f}x |",
        f"| Airflow preloaded | {1000 * warm['dag_median_s']:.0f} ms | {1000 * warm['one_task_median_s']:.0f} ms "
        f"| {warm['ratio']:.1f}x |",
        "",
        f"What the DAG file adds over a trivial DAG: {cold['dag_median_s'] - cold['one_task_median_s']:.2f} s "
        f"cold, {1000 * (warm['dag_median_s'] - warm['one_task_median_s']):.0f} ms with Airflow loaded "
        "(its imports beyond the one-task DAG's: the standard provider's python operators module and our "
        "operators and sensors; and building its tasks and dependencies).",
    ]


def _critical_path(results: dict) -> list[str]:
    path, runs = results["critical_path"], results.get("dag_runs", {})
    return [
        f"A real scheduler, not `dag.test()`: `dag.test()` runs one task at a time in one process (a "
        "deferred sensor's trigger runs inline), so it serialises the DAG's parallel branches and cannot "
        f"show them. Airflow's components run as processes (LocalExecutor, parallelism "
        f"{runs.get('parallelism', '?')}, a triggerer) against a sandbox with the `{path['profile']}` "
        "timing profile (real GKE durations / 60); the DAG is triggered through the REST API and every "
        f"task's state is sampled from the metadata DB every {runs.get('sample_interval_s', '?')} s.",
        "",
        f"- DAG wall time (the run's start to end): **{path['dag_wall_s']:.1f} s**",
        f"- critical path of the intrinsic waits: **{path['intrinsic_critical_path_s']:.1f} s** (3 API "
        "operations before the cluster, cluster provisioning, the longer of model pod start + model load "
        "and CRDs + gateway programming, the body-based router's pod)",
        f"- the tutorial's steps one after another: **{path['steps_one_after_another_s']:.1f} s** = the "
        f"deferred waits from the profile + {path['tutorial_tasks_running_s']:.1f} s of the tutorial "
        "tasks' own running time in this run",
        "",
        f"Wall / critical path = {path['ratio_to_critical_path']:.2f}x; wall / one after another = "
        f"{path['ratio_to_one_after_another']:.2f}x. At the ÷60 scale the intrinsic waits are seconds "
        "long, while every task try pays its own start in a fresh worker process (the DAG file parsed "
        "again, the task's modules imported, the Task SDK's API round trips): the tasks' running time, "
        f"{path['tutorial_tasks_running_s']:.0f} s over {path['tutorial_tasks']} tutorial tasks, not the "
        "waits, sets the wall time. The slowest tasks' running time in this run:",
        "",
        *(
            f"- `{task}`: {seconds:.1f} s"
            for task, seconds in sorted(path["slowest_tasks_running_s"].items(), key=lambda item: -item[1])
        ),
        "",
        "On real GKE the same waits are 60 times longer and the per-task cost is unchanged.",
    ]


def _worker_slots(results: dict) -> list[str]:
    slots = results["worker_slots"]
    rows = [
        f"| `{task}` | {t['running_s']:.1f} s ({t['running_before_deferral_s']:.1f} s before deferring) "
        f"| {t['deferred_s']:.1f} s |"
        for task, t in sorted(slots["waiting_tasks"].items())
    ]
    before = sum(t["running_before_deferral_s"] for t in slots["waiting_tasks"].values())
    return [
        "From the same fresh run: a waiting task is one seen deferred. Seconds seen running (its first "
        "look, then the resume after its trigger fired) hold a worker slot; seconds seen deferred hold "
        f"none. Sampling every {slots['sample_interval_s']} s bounds each stretch's error by that interval.",
        "",
        "| waiting task | running (slot held) | deferred (no slot) |",
        "|---|---|---|",
        *rows,
        f"| **total** | **{slots['slot_seconds_held']:.1f} s** | **{slots['deferred_seconds']:.1f} s** |",
        "",
        f"Slot-seconds held / wait = {100 * slots['ratio']:.1f}%. No slot is held *while* a sensor is "
        "deferred; what is counted is its runs around the deferral, which do not shrink with the wait: "
        f"{before:.1f} s of the {slots['slot_seconds_held']:.1f} s were spent before deferring (the task's "
        "start and its trigger's imports), the rest resuming. Against real GKE's minutes-long waits "
        "the same seconds are a 60 times smaller share.",
    ]


def _rerun(results: dict) -> list[str]:
    rerun = results["rerun"]
    created = ", ".join(f"`{c}`" for c in rerun["rerun_created"]) or "nothing"
    return [
        "A second run (mode `ensure`) on the same stack and sandbox, right after the fresh run finished. "
        "Creates are counted from the sandbox's request log as the whole-DAG tests count them (Service "
        "Usage enables, Compute/Container inserts, Kubernetes POSTs or applies answered 201).",
        "",
        f"- fresh run {rerun['fresh_wall_s']:.1f} s, rerun {rerun['rerun_wall_s']:.1f} s: "
        f"**{100 * rerun['ratio']:.0f}%**",
        f"- the rerun made {rerun['rerun_requests']} requests to the sandbox and created **{created}**",
        "",
        "The rerun still runs every task (each checks, finds what exists and moves on), so its wall time "
        "is the per-task cost of the dependency chain without the waits.",
    ]


def _gateway(results: dict) -> list[str]:
    latency, pickers = results["gateway_latency"], results.get("gateway_pickers") or {}
    lines = [
        "On the data-plane harness (`sandbox/dataplane/harness.py`: the twin's model servers, "
        "gateway listener and Endpoint Picker on loopback, `instant` model latency). Latency: one "
        f"replica, {latency['requests_per_path']} chat completions per path at concurrency "
        f"{latency['concurrency']}, the direct and gateway paths alternating in rounds.",
        "",
        "| path | p50 | p90 | p99 | requests/s |",
        "|---|---|---|---|---|",
    ]
    for name in ("direct", "gateway"):
        row = latency[name]
        lines.append(
            f"| {name} | {row['p50_ms']:.1f} ms | {row['p90_ms']:.1f} ms | {row['p99_ms']:.1f} ms | "
            f"{row['requests_per_s']:.0f} |"
        )
    lines += [
        "",
        f"Gateway overhead: p50 {latency['p50_overhead_ms']:.1f} ms, p99 {latency['p99_overhead_ms']:.1f} ms; "
        f"throughput through the gateway {100 * latency['rps_ratio']:.0f}% of direct. The gateway is an "
        "aiohttp proxy in the same Python process as the model server and the load generator, so on a "
        "busy machine its overhead includes waiting for the CPU.",
        "",
    ]
    if "error" in pickers or not pickers:
        return [*lines, f"Picker comparison not measured: {pickers.get('error', 'not run')}."]
    lines += [
        f"Pickers: {pickers['replicas']} replicas, the first slowed {pickers['slowdown']:.0f}x, "
        f"{pickers['requests_per_picker']} requests per picker at concurrency {pickers['concurrency']} "
        "(`sandbox/dataplane/loadtest.py`'s `benchmark`).",
        "",
        "| picker | slow replica's share | p50 | p90 | p99 |",
        "|---|---|---|---|---|",
    ]
    for name in ("round_robin", "epp"):
        row = pickers[name]
        lines.append(
            f"| {name} | {100 * row['slow_pod_share']:.0f}% | {row['p50_ms']:.0f} ms | {row['p90_ms']:.0f} ms "
            f"| {row['p99_ms']:.0f} ms |"
        )
    lines += ["", f"EPP p90 / round-robin p90 = {pickers['p90_ratio']:.2f}x."]
    return lines


def _setup(results: dict) -> list[str]:
    install, tests = results["install"], results.get("make_test") or {}
    if install.get("skipped"):
        install_line = f"Cold install: **skipped in this run** ({install['reason']})."
    else:
        install_line = (
            f"Cold install: `uv pip sync` of the lock ({install['packages']} packages) into a fresh venv with "
            f"an empty temporary uv cache took **{install['cold_s']:.0f} s** (downloading "
            f"{install['cache_mb']:.0f} MB from PyPI); again into another fresh venv with that cache warm, "
            f"{install['warm_s']:.0f} s ({install['ratio_cold_to_warm']:.1f}x)."
        )
    if tests.get("measured") is False or not tests:
        tests_line = f"`make test`: **not measured** ({tests.get('reason', 'not run')})."
    else:
        how = (
            "carried forward from an earlier bench run"
            if tests.get("carried_forward")
            else "measured in this run"
        )
        tests_line = (
            f"`make test` (the same pytest): **{tests['seconds'] / 60:.1f} min** ({how}, at "
            f"{tests['measured_at']}; `{tests['summary']}`), "
            f"{100 * tests['ratio_to_budget']:.0f}% of the 15-minute budget."
        )
    return [install_line, "", tests_line]
