"""`make bench`: run every measurement, then write bench/results.json, bench/history.json, BENCHMARKS.md.

`python -m bench --quick`: fewer repeats and smaller loads for development; its results go to
bench/results-quick.json only (labelled quick, never in the history or BENCHMARKS.md).
`python -m bench --report-only`: rewrite BENCHMARKS.md from bench/results.json without measuring.
Environment: BENCH_INSTALL=1 times a cold install of the lock, BENCH_RUN_TESTS=1 times the whole
test suite (neither is a figure of issue 14, and each costs minutes).
A measurement that fails is recorded with its error and makes the exit status 1; the others still run.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import critical_path, dag_runs, gateway, overhead, parse_cost, report, setup_cost, worker_slots
from bench.staleness import code_state
from sandbox.core.profiles import get_profile

FLOOR_REPEATS = {"full": 3, "quick": 1}


def _timed(results: dict, name: str, measurement: Callable[[], dict]) -> None:
    print(f"bench: {name} ...", flush=True)
    results["load_at_start"][name] = os.getloadavg()[0]
    started = time.monotonic()
    try:
        results[name] = measurement()
    except Exception as error:  # noqa: BLE001 - one failed measurement must not hide the others
        traceback.print_exc()
        results[name] = {"error": f"{type(error).__name__}: {error}"}
    results["durations_s"][name] = round(time.monotonic() - started, 1)


def _with_quick(measure: Callable[..., dict], quick: bool) -> Callable[[], dict]:
    """Pass `quick` to a measurement that takes it."""
    if "quick" in inspect.signature(measure).parameters:
        return lambda: measure(quick=quick)
    return measure


def dag_run_figures(results: dict, quick: bool) -> dict:
    repeats = FLOOR_REPEATS["quick" if quick else "full"]
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as workdir:
        runs = dag_runs.run_all(Path(workdir), dag_runs.default_run_conf(), repeats)
    sensors = [task.task_id for task in runs.shape.tasks if task.sensor]
    profile = get_profile(dag_runs.PROFILE)
    results["overhead"] = overhead.against_floor(runs.fresh, runs.floors)
    results["critical_path"] = critical_path.measure(runs.fresh, runs.waits, runs.shape, runs.params, profile)
    results["sequential"] = overhead.sequential(runs.fresh, runs.sequential)
    results["worker_slots"] = worker_slots.measure(runs.fresh, sensors)
    results["rerun"] = overhead.rerun(runs.rerun, runs.floors, runs.rerun_requests)
    timelines = {"fresh": runs.fresh, "rerun": runs.rerun, "sequential": runs.sequential}
    timelines.update({f"floor_{i}": run for i, run in enumerate(runs.floors)})
    return {
        "profile": dag_runs.PROFILE,
        "executor": "LocalExecutor",
        "parallelism": runs.parallelism,
        "sample_interval_s": runs.sample_interval,
        "walls_s": {
            "fresh": runs.fresh.wall_seconds,
            "rerun": runs.rerun.wall_seconds,
            "floor": [run.wall_seconds for run in runs.floors],
            "sequential": runs.sequential.wall_seconds,
        },
        "twin_waits": runs.waits,
        "runs": {
            name: {"run_id": run.run_id, "tries": run.tries, "transitions": run.timeline.transitions}
            for name, run in timelines.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller loads; not in history")
    parser.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md, measure nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        results = report.load(report.RESULTS_JSON, {})
        report.BENCHMARKS_MD.write_text(report.markdown(results, report.load(report.HISTORY_JSON, [])))
        return 0
    started = time.monotonic()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "code": code_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "load_at_start": {},
        "durations_s": {},
    }
    _timed(results, "parse_cost", _with_quick(parse_cost.measure, args.quick))
    _timed(results, "dag_runs", lambda: dag_run_figures(results, args.quick))
    _timed(results, "gateway_latency", _with_quick(gateway.measure_latency, args.quick))
    _timed(results, "gateway_pickers", _with_quick(gateway.measure_pickers, args.quick))
    if setup_cost.install_requested():
        _timed(results, "install", setup_cost.measure_install)
    if setup_cost.tests_requested():
        _timed(results, "make_test", setup_cost.measure_tests)
    results["bench_wall_s"] = round(time.monotonic() - started, 1)
    report.write(results)
    print(report.table(results, report.load(report.HISTORY_JSON, [])))
    where = report.QUICK_RESULTS_JSON if args.quick else f"{report.RESULTS_JSON} and {report.BENCHMARKS_MD}"
    print(f"bench: {results['bench_wall_s']} s; wrote {where}")
    failed = [name for name, value in results.items() if isinstance(value, dict) and "error" in value]
    if failed:
        print(f"bench: failed measurements: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
