"""`make bench`'s measurements on tiny configurations: each returns well-formed numbers.

No timing assertions: only that figures exist and are consistent with their parts. The scheduler
runs (bench/dag_runs.py) take minutes, so their figures are computed here from timelines sampled
out of a small SQLite DB shaped like Airflow's and from synthetic ones; `make bench` runs them for
real. The floor DAG's generator is tested on the real DAG (parsed with DagBag, no scheduler).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import sqlite3
import subprocess
from datetime import UTC, datetime

import pytest

from bench import critical_path, floor_dag, overhead, parse_cost, report, setup_cost, staleness, worker_slots
from bench.dag_runs import real_dag
from bench.timeline import MetadataReader, RunRecord, Timeline, follow_run
from sandbox.core.profiles import get_profile

DAG_ID = "gke_inference_gateway"
RUN_ID = "manual__bench"


def finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_parse_cost_times_warm_and_cold_parses_and_renders_them_as_table_rows():
    result = parse_cost.measure(repeats=1)
    for side in ("warm", "cold"):
        dag, one_task = result[side]["dag"], result[side]["one_task"]
        assert finite_positive(dag["ms"]["median"]) and finite_positive(one_task["ms"]["median"])
        assert result[side]["ratio"]["median"] == pytest.approx(dag["seconds"][0] / one_task["seconds"][0])
        # The two steps it splits out lie within the timed parse.
        assert dag["dagbag_s"]["median"] + dag["serialize_s"]["median"] <= dag["seconds"][0]
    # Warm: Airflow was imported before the clock, so a one-task DAG parses far below a cold parse.
    assert result["warm"]["one_task"]["ms"]["median"] < result["cold"]["one_task"]["ms"]["median"] / 5
    # Each warm parse imports our package afresh (nothing cached from the warm-up parse).
    assert "gke_inference" in result["modules_beyond_one_task"]
    rows = report.parse_rows({"parse_cost": result})
    assert [row["unit"] for row in rows] == ["ms", "ms", "x", "x", "ms"]
    # The factory: the shipped example environments' DAGs, each built and serialized in the parse.
    factory = result["example_environments"]
    assert factory["dags"] == 2 and factory["ms"]["median"] > result["warm"]["dag"]["ms"]["median"]
    assert (
        rows[0]["target"] == parse_cost.WARM_PARSE_GOAL_MS
        and rows[0]["median"] == result["warm"]["dag"]["ms"]["median"]
    )
    assert "serialization" in parse_cost.markdown_section(result)


def test_parse_cost_refuses_a_file_without_exactly_one_dag(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('not a DAG')\n")
    with pytest.raises(RuntimeError, match="broken.py"):
        parse_cost.warm_parses([broken])


def airflow_shaped_db(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE task_instance (dag_id, run_id, map_index, task_id, state, try_number)")
    db.execute("CREATE TABLE dag_run (dag_id, run_id, state, start_date, end_date)")
    db.execute(
        "INSERT INTO dag_run VALUES (?, ?, 'running', ?, NULL)", (DAG_ID, RUN_ID, "2026-01-01 00:00:00")
    )
    db.executemany(
        "INSERT INTO task_instance VALUES (?, ?, -1, ?, ?, ?)",
        [
            (DAG_ID, RUN_ID, "cluster.wait_cluster_running", "deferred", 1),
            (DAG_ID, RUN_ID, "run_report", None, 0),
        ],
    )
    db.commit()
    return db


def test_follow_run_samples_states_and_tries_until_the_run_finishes(tmp_path):
    db_path = tmp_path / "airflow.db"
    db = airflow_shaped_db(db_path)
    reader = MetadataReader(db_path)
    with pytest.raises(TimeoutError):
        follow_run(reader, DAG_ID, RUN_ID, timeout=0.05, interval=0.01)

    db.execute("UPDATE task_instance SET state = 'success'")
    db.execute("UPDATE task_instance SET try_number = 2 WHERE task_id = 'cluster.wait_cluster_running'")
    db.execute("UPDATE dag_run SET state = 'success', end_date = '2026-01-01 00:00:42.5'")
    db.commit()
    record = follow_run(reader, DAG_ID, RUN_ID, timeout=5, interval=0.01)
    assert record.state == "success" and record.wall_seconds == 42.5
    assert record.started_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert record.timeline.final_states() == {
        "cluster.wait_cluster_running": "success",
        "run_report": "success",
    }
    # A retry hidden in the final state shows in try_number.
    assert record.retried() == ["cluster.wait_cluster_running"]


def sampled_run(wall: float, steps=None, run_id: str = RUN_ID) -> RunRecord:
    """A run as the sampler would record it: seconds since sampling began, and each new state."""
    timeline = Timeline(interval=0.1)
    for at, states in steps or (
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
    return RunRecord(run_id, "success", wall, timeline, started_at=1000.0)


SENSORS = ["cluster.wait_cluster_running", "verify.wait_model_pods_ready"]


def test_worker_slots_split_the_running_before_deferral_from_the_resume():
    slots = worker_slots.measure(sampled_run(wall=30.0), SENSORS)
    assert slots["slot_seconds_held"] == pytest.approx(1.0 + 0.5 + 0.5)
    assert slots["slot_seconds_before_deferral"] == pytest.approx(1.0 + 0.5)
    assert slots["deferred_seconds"] == pytest.approx(6.0 + 7.5)
    assert slots["ratio"]["median"] == pytest.approx(2.0 / 13.5)
    assert slots["pre_deferral_ratio"]["median"] == pytest.approx(1.5 / 13.5)
    # Only the sensors count: a deferring task that is not one of the four waits is left out.
    assert set(worker_slots.measure(sampled_run(wall=30.0), SENSORS[:1])["waiting_tasks"]) == {SENSORS[0]}


def test_overhead_against_the_floor_sequential_and_rerun():
    real = sampled_run(wall=30.0)
    # The floor: the same deferrals, every other task an EmptyOperator (never seen running).
    floor_steps = (
        (0.0, {"plan_run": "success", "cluster.wait_cluster_running": "running"}),
        (0.2, {"cluster.wait_cluster_running": "deferred", "verify.wait_model_pods_ready": "running"}),
        (0.4, {"verify.wait_model_pods_ready": "deferred"}),
        (6.2, {"cluster.wait_cluster_running": "running"}),
        (6.3, {"cluster.wait_cluster_running": "success"}),
        (8.0, {"verify.wait_model_pods_ready": "success"}),
    )
    floors = [sampled_run(wall, floor_steps) for wall in (20.0, 24.0, 25.0)]
    result = overhead.against_floor(real, floors)
    assert result["ratio"] == {"median": pytest.approx(0.25), "min": pytest.approx(0.2), "max": 0.5, "n": 3}
    assert result["per_task_overhead_s"] == pytest.approx(
        {"plan_run": 1.0, "cluster.wait_cluster_running": 1.5 - 0.3, "verify.wait_model_pods_ready": 0.3}
    )
    assert result["per_task_median_s"]["median"] == pytest.approx(1.0)
    assert result["per_task_p90_s"]["median"] == pytest.approx(1.2)  # nearest rank of three: the top
    assert overhead.sequential(real, sampled_run(wall=60.0))["ratio"]["median"] == pytest.approx(0.5)

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
    again = overhead.rerun(sampled_run(wall=22.0), floors, requests)
    assert again["creates"]["median"] == 2 and again["rerun_requests"] == 4
    assert again["ratio_to_floor"]["median"] == pytest.approx(22.0 / 24.0)


def test_p90_is_the_nearest_rank():
    from bench.stats import percentile

    assert percentile(list(range(1, 11)), 0.9) == 9
    assert percentile([3.0], 0.9) == 3.0
    assert percentile([1, 2, 3, 4, 5], 0.9) == 5  # rank ceil(4.5) = 5


# -- the critical path from the twin's wait log --------------------------------------------------------

PARAMS = {
    "network_name": "vpc",
    "subnet_name": "nodes",
    "proxy_subnet_name": "proxy",
    "model_app_label": "vllm",
    "gateway_name": "gw",
}


def chain_shape() -> floor_dag.DagShape:
    def task(task_id):
        return floor_dag.TaskShape(task_id, task_id.split(".")[-1], None, "all_success", False, False, False)

    ids = [
        "project_network.ensure_network",
        "project_network.ensure_node_subnet",
        "project_network.ensure_proxy_subnet",
        "cluster.wait_cluster_running",
        "verify.wait_gateway_address",
        "verify.wait_model_pods_ready",
        "run_report",
    ]
    edges = (
        ("project_network.ensure_network", "project_network.ensure_node_subnet"),
        ("project_network.ensure_network", "project_network.ensure_proxy_subnet"),
        ("project_network.ensure_node_subnet", "cluster.wait_cluster_running"),
        ("project_network.ensure_proxy_subnet", "verify.wait_gateway_address"),
        ("cluster.wait_cluster_running", "verify.wait_gateway_address"),
        ("cluster.wait_cluster_running", "verify.wait_model_pods_ready"),
        ("verify.wait_gateway_address", "run_report"),
        ("verify.wait_model_pods_ready", "run_report"),
    )
    return floor_dag.DagShape("d", (), tuple(task(i) for i in ids), edges)


def twin_waits(at: float = 1000.0) -> list[dict]:
    base = "https://compute.googleapis.com/compute/v1/projects/p"
    return [
        {
            "kind": "operation",
            "name": "insert",
            "began": at,
            "ended": at + 0.5,
            "target": f"{base}/global/networks/vpc",
        },
        {
            "kind": "operation",
            "name": "insert",
            "began": at + 1,
            "ended": at + 1.5,
            "target": f"{base}/regions/r/subnetworks/nodes",
        },
        {
            "kind": "operation",
            "name": "insert",
            "began": at + 1,
            "ended": at + 3.0,
            "target": f"{base}/regions/r/subnetworks/proxy",
        },
        {
            "kind": "operation",
            "name": "CREATE_CLUSTER",
            "began": at + 2,
            "ended": at + 8,
            "target": "x/clusters/c",
        },
        {"kind": "pod", "name": "default/vllm-1", "began": at + 9, "ended": at + 14, "app": "vllm"},
        {"kind": "pod", "name": "default/vllm-2", "began": at + 9.5, "ended": at + 15, "app": "vllm"},
        {"kind": "gateway", "name": "default/gw", "began": at + 9, "ended": at + 12},
        {"kind": "pod", "name": "default/epp-1", "began": at + 9, "ended": at + 11, "app": "epp"},
    ]


def test_critical_path_is_the_heaviest_chain_of_the_twins_measured_waits():
    run = sampled_run(wall=40.0)
    result = critical_path.measure(run, twin_waits(), chain_shape(), PARAMS, get_profile("realistic"))
    # network 0.5 -> node subnet 0.5 -> cluster 6 -> model pods (first seen to last Ready) 6
    assert result["measured_critical_path_s"] == pytest.approx(0.5 + 0.5 + 6.0 + 6.0)
    assert [task for task, _ in result["critical_path_tasks"]] == [
        "project_network.ensure_network",
        "project_network.ensure_node_subnet",
        "cluster.wait_cluster_running",
        "verify.wait_model_pods_ready",
    ]
    assert result["unclaimed_waits"] == ["pod default/epp-1"]
    assert result["ratio_to_critical_path"] == pytest.approx(40.0 / 13.0)
    # The real-scale factor is the profile's, not a constant.
    assert result["real_scale_critical_path_s"] == pytest.approx(13.0 * 60)
    assert result["overhead_share_at_real_scale"] == pytest.approx((40.0 - 13.0) / (13.0 * 60))
    halved = dataclasses.replace(get_profile("realistic"), real_gke_factor=30.0)
    halved_result = critical_path.measure(run, twin_waits(), chain_shape(), PARAMS, halved)
    assert halved_result["real_scale_critical_path_s"] == pytest.approx(13.0 * 30)
    assert (
        critical_path.measure(run, twin_waits(), chain_shape(), PARAMS, get_profile("instant"))[
            "overhead_share_at_real_scale"
        ]
        is None
    )


# -- the floor DAG, generated from the real DAG ---------------------------------------------------------


@pytest.fixture(scope="module")
def real_shape():
    return floor_dag.shape_of(real_dag())


def real_run_of(shape: floor_dag.DagShape) -> Timeline:
    """A run of the real DAG in mode ensure as the sampler records it: the branch took `build`, a
    sensor deferred, the cleanup gate skipped itself."""
    timeline = Timeline(interval=0.1)
    timeline.record(0.0, {t.task_id: None for t in shape.tasks})
    skipped = {t.task_id for t in shape.tasks if t.task_id.startswith(("teardown.", "cleanup."))}
    skipped |= {"plan_changes", "stop_after_plan", "rebuild_after_teardown", "keep_for"}
    skipped |= {"cluster.install_crds_full_set"}
    timeline.record(1.0, {"cluster.wait_cluster_running": "running", "cleanup.start": "running"})
    timeline.record(2.0, {"cluster.wait_cluster_running": "deferred"})
    timeline.record(6.5, {t.task_id: "skipped" if t.task_id in skipped else "success" for t in shape.tasks})
    return timeline


def test_the_floor_dag_has_the_real_dags_shape_and_none_of_its_code(real_shape, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    chosen = floor_dag.behaviours(real_shape, real_run_of(real_shape))
    assert chosen["cluster.wait_cluster_running"] == (
        "wait",
        4.5,
        True,
    )  # starts in the triggerer, as the real one
    assert chosen["choose_mode"] == ("branch", ["build"])
    assert chosen["cluster.choose_crd_set"] == ("branch", ["cluster.install_crds_objective_only"])
    assert chosen["cleanup.start"] == ("skip",)
    assert chosen["project_network.enable_apis"] == ("empty",)

    path = floor_dag.write(tmp_path, real_shape, chosen, "manual__measured")
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    floor = floor_dag.shape_of(bag.dags[DAG_ID + floor_dag.FLOOR_SUFFIX])
    assert [t.task_id for t in floor.tasks] == [t.task_id for t in real_shape.tasks]
    assert floor.edges == real_shape.edges
    assert floor.groups == real_shape.groups
    assert {t.task_id: t.trigger_rule for t in floor.tasks} == {
        t.task_id: t.trigger_rule for t in real_shape.tasks
    }
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [node])
    }
    assert not any("gke_inference" in name for name in imported), imported


# -- staleness and the report ----------------------------------------------------------------------------


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def new_repo(path):
    git(path, "init", "-q")
    git(path, "config", "user.email", "b@example.com")
    git(path, "config", "user.name", "bench")


def test_figures_are_stale_when_their_code_changed_since_the_measured_commit(tmp_path):
    new_repo(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "docs" / "a.md").write_text("text\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    measured = staleness.code_state(tmp_path)
    assert measured["dirty"] is False
    assert staleness.is_stale(measured["commit"], ("src",), tmp_path) is False

    (tmp_path / "docs" / "a.md").write_text("other text\n")
    git(tmp_path, "commit", "-qam", "docs only")
    assert staleness.is_stale(measured["commit"], ("src",), tmp_path) is False

    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert staleness.code_state(tmp_path)["dirty"] is True
    git(tmp_path, "commit", "-qam", "code")
    assert staleness.is_stale(measured["commit"], ("src",), tmp_path) is True
    assert staleness.is_stale(None, ("src",), tmp_path) is None


def bench_results(wall: float, quick: bool = False, commit: str | None = None) -> dict:
    run = sampled_run(wall=wall)
    floors = [sampled_run(wall=20.0)]
    return {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "code": {"commit": commit, "dirty": False},
        "machine": {"cpus": 2, "load_avg_1m": 1.0},
        "bench_wall_s": 1.0,
        "parse_cost": {"error": "RuntimeError: parsing failed"},
        "overhead": overhead.against_floor(run, floors),
        "worker_slots": worker_slots.measure(run, SENSORS),
        "rerun": overhead.rerun(sampled_run(wall=21.0), floors, []),
        "sequential": overhead.sequential(run, sampled_run(wall=2 * wall)),
        "critical_path": critical_path.measure(
            run, twin_waits(), chain_shape(), PARAMS, get_profile("realistic")
        ),
        "dag_runs": {
            "profile": "realistic",
            "parallelism": 4,
            "sample_interval_s": 0.1,
            "walls_s": {"fresh": wall, "rerun": 21.0, "floor": [20.0], "sequential": 2 * wall},
        },
        "load_at_start": {"dag_runs": 0.5},
    }


def test_report_keeps_full_runs_in_the_history_and_shows_a_goal_met_once_and_missed_once(tmp_path):
    paths = {
        "results_path": tmp_path / "results.json",
        "history_path": tmp_path / "history.json",
        "markdown_path": tmp_path / "BENCHMARKS.md",
        "repo": tmp_path,
    }
    report.write(bench_results(wall=22.0), **paths)  # 10% above the floor: met
    report.write(bench_results(wall=30.0), **paths)  # 50%: missed
    report.write(bench_results(wall=90.0, quick=True), **{**paths, "results_path": tmp_path / "quick.json"})
    history = report.load(tmp_path / "history.json", [])
    assert len(history) == 2  # the quick run stayed out
    text = (tmp_path / "BENCHMARKS.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 1a."))
    assert "50.0% (n=1)" in row and "**missed**" in row
    assert "2 runs: 10.0% to 50.0%; **met in 1, missed in 1**" in row
    assert "| 5a. objects created by the ensure rerun | 0 (n=1) | <= 0 | met |" in text
    assert "**Not measured**: the measurement failed in this run: `RuntimeError: parsing failed`" in text
    assert report.load(tmp_path / "quick.json", {})["quick"] is True
    assert "could not be rendered" not in text
    assert "critical path **13.0 s**: `project_network.ensure_network` 0.5 s -> " in text
    assert "| 3. parallel wall / sequential wall (parallelism 1) | 0.500x (n=1) |" in text


def test_report_marks_a_figure_stale_and_flags_a_retried_task(tmp_path):
    new_repo(tmp_path)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "x.py").write_text("1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    results = bench_results(wall=22.0, commit=git(tmp_path, "rev-parse", "HEAD"))
    results["overhead"]["retried_tasks"] = ["cluster.wait_cluster_running"]
    assert "| no |" in report.table(results, [], tmp_path)
    (tmp_path / "bench" / "x.py").write_text("2\n")
    git(tmp_path, "commit", "-qam", "two")
    table = report.table(results, [], tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| 1a."))
    assert row.endswith("| **stale** |") and "retried: cluster.wait_cluster_running" in row


def test_setup_cost_runs_only_when_asked(monkeypatch):
    monkeypatch.delenv("BENCH_INSTALL", raising=False)
    monkeypatch.delenv("BENCH_RUN_TESTS", raising=False)
    assert not setup_cost.install_requested() and not setup_cost.tests_requested()
    monkeypatch.setenv("BENCH_INSTALL", "1")
    monkeypatch.setenv("BENCH_RUN_TESTS", "1")
    assert setup_cost.install_requested() and setup_cost.tests_requested()
