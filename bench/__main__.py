"""`make bench`: run every measurement, then write bench/results.json and BENCHMARKS.md.

Environment: BENCH_SKIP_INSTALL=1 skips the cold install (it downloads ~1.5 GB from PyPI);
BENCH_RUN_TESTS=1 runs the whole test suite to time it (otherwise the last timing is carried).
`python -m bench --report-only` rewrites BENCHMARKS.md from bench/results.json without measuring.
A measurement that fails is recorded with its error and makes the exit status 1; the others still run.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import critical_path, dag_runs, gateway, parse_cost, report, rerun, setup_cost, worker_slots
from sandbox.core.profiles import get_profile


def _timed(results: dict, name: str, measurement: Callable[[], dict]) -> None:
    print(f"bench: {name} ...", flush=True)
    started = time.monotonic()
    try:
        results[name] = measurement()
    except Exception as error:  # noqa: BLE001 - one failed measurement must not hide the others
        traceback.print_exc()
        results[name] = {"error": f"{type(error).__name__}: {error}"}
    results["durations_s"][name] = round(time.monotonic() - started, 1)


def _dag_run_figures(results: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as workdir:
        runs = dag_runs.run_twice(Path(workdir), dag_runs.default_run_conf())
    profile = get_profile(dag_runs.PROFILE)
    results["critical_path"] = critical_path.measure(runs.fresh, profile)
    results["worker_slots"] = worker_slots.measure(runs.fresh)
    results["rerun"] = rerun.measure(runs.fresh, runs.rerun, runs.rerun_requests)
    return {
        "profile": dag_runs.PROFILE,
        "executor": "LocalExecutor",
        "parallelism": runs.parallelism,
        "sample_interval_s": runs.sample_interval,
        "fresh_run": {task: changes for task, changes in runs.fresh.timeline.transitions.items()},
    }


def main(argv: list[str] | None = None) -> int:
    previous = report.load_previous()
    if (argv if argv is not None else sys.argv[1:]) == ["--report-only"]:
        # Rewrite BENCHMARKS.md from the last results, e.g. after a change to its prose.
        report.write(previous)
        return 0
    started = time.monotonic()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "durations_s": {},
        "previous_run": {
            "started_at": previous.get("started_at"),
            "figures": report.headline_figures(previous) if previous else {},
        },
    }
    _timed(results, "parse_cost", parse_cost.measure)
    _timed(results, "dag_runs", lambda: _dag_run_figures(results))
    _timed(results, "gateway_latency", gateway.measure_latency)
    _timed(results, "gateway_pickers", gateway.measure_pickers)
    _timed(results, "install", setup_cost.measure_install)
    _timed(results, "make_test", lambda: setup_cost.measure_tests(previous.get("make_test")))
    results["bench_wall_s"] = round(time.monotonic() - started, 1)
    report.write(results)
    print(report.table(results))
    print(f"bench: {results['bench_wall_s']} s; wrote {report.RESULTS_JSON} and {report.BENCHMARKS_MD}")
    failed = [name for name, value in results.items() if isinstance(value, dict) and "error" in value]
    if failed:
        print(f"bench: failed measurements: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
