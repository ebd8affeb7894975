"""`make bench`'s measurements on tiny configurations: each returns well-formed numbers.

No timing assertions: only that figures exist, are finite and consistent with their parts. The
scheduler runs (bench/dag_runs.py) take minutes, so their figures are computed here from a
timeline sampled out of a small SQLite DB shaped like Airflow's; `make bench` runs them for real.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime

import pytest

from bench import critical_path, gateway, parse_cost, report, rerun, setup_cost, worker_slots
from bench.timeline import MetadataReader, RunRecord, Timeline, follow_run
from sandbox.core.profiles import get_profile

DAG_ID = "gke_inference_gateway"
RUN_ID = "manual__bench"


def finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_parse_cost_compares_medians_of_cold_and_preloaded_parses():
    result = parse_cost.measure(repeats=1)
    for side in ("cold", "airflow_preloaded"):
        figures = result[side]
        assert finite_positive(figures["dag_median_s"]) and finite_positive(figures["one_task_median_s"])
        assert figures["ratio"] == pytest.approx(figures["dag_median_s"] / figures["one_task_median_s"])
    assert result["ratio"] == result["cold"]["ratio"]
    assert result["airflow_preloaded"]["airflow_modules"] > 100


def test_parse_cost_refuses_a_file_without_exactly_one_dag(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('not a DAG')\n")
    with pytest.raises(RuntimeError, match="broken.py"):
        parse_cost.parse(broken, [])


def test_gateway_latency_and_picker_figures():
    latency = gateway.measure_latency(requests=8, concurrency=2, rounds=1)
    assert latency["requests_per_path"] == 8
    for path in ("direct", "gateway"):
        assert finite_positive(latency[path]["p50_ms"]) and latency[path]["p99_ms"] >= latency[path]["p50_ms"]
    assert latency["p50_overhead_ms"] == pytest.approx(
        latency["gateway"]["p50_ms"] - latency["direct"]["p50_ms"]
    )

    pickers = gateway.measure_pickers(requests=12, concurrency=3, replicas=2, slowdown=3.0)
    for picker in ("round_robin", "epp"):
        assert 0 <= pickers[picker]["slow_pod_share"] <= 1
    assert pickers["p90_ratio"] == pytest.approx(pickers["epp"]["p90_ms"] / pickers["round_robin"]["p90_ms"])


def airflow_shaped_db(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE task_instance (dag_id, run_id, map_index, task_id, state)")
    db.execute("CREATE TABLE dag_run (dag_id, run_id, state, start_date, end_date)")
    db.execute(
        "INSERT INTO dag_run VALUES (?, ?, 'running', ?, NULL)", (DAG_ID, RUN_ID, "2026-01-01 00:00:00")
    )
    db.executemany(
        "INSERT INTO task_instance VALUES (?, ?, -1, ?, ?)",
        [(DAG_ID, RUN_ID, "cluster.wait_cluster_running", "deferred"), (DAG_ID, RUN_ID, "run_report", None)],
    )
    db.commit()
    return db


def test_follow_run_samples_states_until_the_run_finishes(tmp_path):
    db_path = tmp_path / "airflow.db"
    db = airflow_shaped_db(db_path)
    reader = MetadataReader(db_path)
    with pytest.raises(TimeoutError):
        follow_run(reader, DAG_ID, RUN_ID, timeout=0.05, interval=0.01)

    db.execute("UPDATE task_instance SET state = 'success'")
    db.execute("UPDATE dag_run SET state = 'success', end_date = '2026-01-01 00:00:42.5'")
    db.commit()
    record = follow_run(reader, DAG_ID, RUN_ID, timeout=5, interval=0.01)
    assert record.state == "success" and record.wall_seconds == 42.5
    assert record.timeline.final_states() == {
        "cluster.wait_cluster_running": "success",
        "run_report": "success",
    }


def sampled_run(wall: float) -> RunRecord:
    """A run as the sampler would record it: seconds since sampling began, and each new state."""
    timeline = Timeline(interval=0.1)
    for at, states in (
        (
            0.0,
            {
                "plan_run": "running",
                "cluster.wait_cluster_running": None,
                "verify.wait_model_pods_ready": None,
            },
        ),
        (1.0, {"plan_run": "success", "cluster.wait_cluster_running": "running"}),
        (2.0, {"cluster.wait_cluster_running": "deferred", "verify.wait_model_pods_ready": "running"}),
        (2.5, {"verify.wait_model_pods_ready": "deferred"}),
        (8.0, {"cluster.wait_cluster_running": "running"}),
        (8.5, {"cluster.wait_cluster_running": "success"}),
        (10.0, {"verify.wait_model_pods_ready": "success"}),
    ):
        timeline.record(at, states)
    return RunRecord(RUN_ID, "success", wall, timeline)


def test_figures_from_a_sampled_run():
    run, profile = sampled_run(wall=30.0), get_profile("realistic")

    slots = worker_slots.measure(run)
    assert set(slots["waiting_tasks"]) == {"cluster.wait_cluster_running", "verify.wait_model_pods_ready"}
    assert slots["slot_seconds_held"] == pytest.approx(1.0 + 0.5 + 0.5)
    assert slots["waiting_tasks"]["cluster.wait_cluster_running"]["running_before_deferral_s"] == 1.0
    assert slots["deferred_seconds"] == pytest.approx(6.0 + 7.5)

    path = critical_path.measure(run, profile)
    assert path["tutorial_tasks_running_s"] == pytest.approx(2.0)  # plan_run is bookkeeping, not a step
    assert path["intrinsic_critical_path_s"] == pytest.approx(3 * 0.5 + 6.0 + max(1.0 + 5.0, 0.2 + 3.0) + 2.0)
    assert path["ratio_to_critical_path"] == pytest.approx(30.0 / path["intrinsic_critical_path_s"])
    assert path["steps_one_after_another_s"] > path["intrinsic_critical_path_s"]

    requests = [
        {
            "api": "compute",
            "method": "GET",
            "path": "/compute/v1/projects/p/global/networks/v",
            "status": 200,
        },
        {"api": "container", "method": "POST", "path": "/v1/projects/p/locations/r/clusters", "status": 200},
        {
            "api": "kube",
            "method": "PATCH",
            "path": "/api/v1/namespaces/default/secrets/hf-token",
            "status": 200,
        },
        {
            "api": "kube",
            "method": "PATCH",
            "path": "/apis/apps/v1/namespaces/default/deployments/x",
            "status": 201,
        },
    ]
    again = rerun.measure(run, sampled_run(wall=6.0), requests)
    assert again["ratio"] == pytest.approx(0.2)
    assert again["rerun_creates"] == 2 and again["rerun_requests"] == 4


def test_setup_cost_skips_the_install_and_carries_the_last_test_timing(monkeypatch):
    monkeypatch.setenv("BENCH_SKIP_INSTALL", "1")
    monkeypatch.delenv("BENCH_RUN_TESTS", raising=False)
    assert setup_cost.measure_install() == {"skipped": True, "reason": "BENCH_SKIP_INSTALL=1"}
    last = {
        "measured": True,
        "seconds": 300.0,
        "ratio_to_budget": 300 / 900,
        "measured_at": "2026-01-01T00:00:00",
    }
    assert setup_cost.measure_tests(last) == {**last, "carried_forward": True}
    assert setup_cost.measure_tests(None)["measured"] is False


def test_report_writes_the_json_and_a_table_with_every_target(tmp_path):
    run = sampled_run(wall=30.0)
    results = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": 2, "load_avg_1m": 1.0},
        "bench_wall_s": 1.0,
        "parse_cost": {"error": "RuntimeError: parsing failed"},
        "critical_path": critical_path.measure(run, get_profile("realistic")),
        "worker_slots": worker_slots.measure(run),
        "rerun": rerun.measure(run, sampled_run(wall=3.0), []),
        "dag_runs": {"parallelism": 4, "sample_interval_s": 0.1},
        "install": {"skipped": True, "reason": "BENCH_SKIP_INSTALL=1"},
        "make_test": {"measured": False, "reason": "never measured here"},
    }
    report.write(results, tmp_path / "results.json", tmp_path / "BENCHMARKS.md")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    for figure in report.FIGURES:
        assert figure.label in text
    assert "| 4a. rerun wall time / fresh run wall time | 10.0% | <= 25.0% | met |" in text
    assert "**Not measured**: the measurement failed in this run: `RuntimeError: parsing failed`" in text
    assert "skipped in this run" in text
    assert (tmp_path / "results.json").read_text().startswith("{")
