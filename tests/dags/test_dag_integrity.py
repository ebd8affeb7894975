"""Every DAG file imports cleanly and cheaply, and every task is documented and retried."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY_MODULES = ("google.cloud.", "googleapiclient", "kubernetes", "kubernetes_asyncio", "openai", "aiohttp")
# The notifiers' providers load when a message is sent, never at parse (~0.27 s a parse otherwise);
# their get_provider_info modules are loaded by Airflow's ProvidersManager anyway.
HEAVY_MODULES += ("airflow.providers.smtp.hooks", "airflow.providers.smtp.notifications", "aiosmtplib")
HEAVY_MODULES += ("airflow.providers.slack.hooks", "airflow.providers.slack.notifications", "slack_sdk")
HEAVY_MODULES += ("airflow.providers.http",)
# What a DAG file may import at its top level: Airflow's authoring API, the gke_inference package, stdlib.
ALLOWED_TOP_LEVEL = (
    "airflow.sdk",
    "airflow.providers.standard",
    "gke_inference",
    "pendulum",
    "datetime",
    "os",
    "__future__",
)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_exist():
    assert DAG_FILES, "no DAG files in dags/"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "gke_inference_gateway" in dagbag.dags


def test_every_task_retries_and_is_documented(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag.dag_id}.{task.task_id} retries {task.retries}"
            assert task.doc_md and len(task.doc_md) > 40, f"{dag.dag_id}.{task.task_id} has no docs"


def test_dag_runs_one_at_a_time_without_catchup(dagbag):
    dag = dagbag.dags["gke_inference_gateway"]
    assert dag.max_active_runs == 1
    assert dag.catchup is False


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_top_level_imports_are_light(dag_file):
    tree = ast.parse(dag_file.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            assert module.startswith(ALLOWED_TOP_LEVEL), f"{dag_file.name} imports {module} at the top level"


# What parsing a DAG file may load beyond what parsing a one-task DAG loads (bench/parse_cost.py's
# warm parse), besides the airflow.* modules the DAG file names itself (the dag-processor imports
# those before it parses the file): our package and what building the DAG needs. A new entry here is
# a cost on every parse; import a module where it is used (execute, a hook) instead.
ALLOWED_BEYOND_ONE_TASK = ("dag_under_test", "gke_inference", "airflow.timetables.trigger")
ALLOWED_BEYOND_ONE_TASK += ("statistics", "_statistics")  # stdlib, the load-test DAG's
# With environments defined, their definitions are checked: yaml's escapes, validation's suggestions.
ALLOWED_WITH_ENVIRONMENTS = ("encodings.unicode_escape", "difflib")

# A one-task DAG is built and serialized first (what the dag-processor has loaded before our file),
# the file's airflow.* imports imported, then the DAG file is executed and its DAGs serialized, as
# the dag-processor's child does.
PARSE_PROBE = r"""
import importlib.util, json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("network access at parse time")
socket.socket.connect = refuse
socket.create_connection = refuse
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.serialization.serialized_objects import DagSerialization
with DAG(dag_id="one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as one_task:
    EmptyOperator(task_id="only")
DagSerialization.to_dict(one_task)
from airflow.utils.file import iter_airflow_imports
for name in iter_airflow_imports(sys.argv[1]):  # as the dag-processor does before parsing the file
    importlib.import_module(name)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["dag_under_test"] = module
spec.loader.exec_module(module)
for dag in {value.dag_id: value for value in vars(module).values() if isinstance(value, DAG)}.values():
    DagSerialization.to_dict(dag)
heavy = tuple(json.loads(sys.argv[2]))
print(json.dumps({
    "heavy": sorted({".".join(name.split(".")[:3]) for name in sys.modules if name.startswith(heavy)}),
    "beyond_one_task": sorted(set(sys.modules) - before),
}))
"""


# Each DAG file as it is, and the gateway's with the shipped example environments (one DAG each).
PARSE_CASES = [(path, None) for path in DAG_FILES]
PARSE_CASES += [(REPO / "dags" / "gke_inference_gateway.py", REPO / "include" / "environments")]


@pytest.mark.parametrize(
    ("dag_file", "environments"),
    PARSE_CASES,
    ids=lambda value: value.name if value is not None else "no-environments",
)
def test_parsing_touches_no_db_no_network_and_no_heavy_client(dag_file, environments, tmp_path):
    env = dict(os.environ)
    env.pop("GKE_INFERENCE_ENVIRONMENTS_DIR", None)
    if environments is not None:
        env["GKE_INFERENCE_ENVIRONMENTS_DIR"] = str(environments)
    # A database that cannot exist: any parse-time query fails the probe.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path}/missing/dir/airflow.db"
    env["PYTHONPATH"] = str(REPO)
    # Every notification target configured, so the DAG builds its notifiers and deadline at parse.
    env.update(
        GKE_INFERENCE_NOTIFY_SMTP_CONN_ID="notify_smtp",
        GKE_INFERENCE_NOTIFY_EMAIL_TO="platform@example.com",
        GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID="notify_webhook",
        GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS="true",
    )
    probe = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(dag_file), json.dumps(HEAVY_MODULES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    loaded = json.loads(probe.stdout.strip().splitlines()[-1])
    assert loaded["heavy"] == [], f"parsing {dag_file.name} imports {loaded['heavy']}"
    assert "dag_under_test" in loaded["beyond_one_task"], "the probe did not see the DAG file's own module"
    allowed = ALLOWED_BEYOND_ONE_TASK + (ALLOWED_WITH_ENVIRONMENTS if environments else ())
    unexpected = [name for name in loaded["beyond_one_task"] if not name.startswith(allowed)]
    assert unexpected == [], f"parsing {dag_file.name} loads, beyond a one-task DAG: {unexpected}"


def test_schedule_is_weekly_and_overridable_from_the_environment(tmp_path):
    code = (
        "import importlib.util,sys;"
        "spec=importlib.util.spec_from_file_location('d', sys.argv[1]);"
        "m=importlib.util.module_from_spec(spec);spec.loader.exec_module(m);"
        "d=m.gke_inference_gateway;print(d.schedule, d.get_task('plan_run').schedule_mode)"
    )
    dag_file = str(REPO / "dags" / "gke_inference_gateway.py")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("GKE_INFERENCE_SCHEDULE_MODE", None)
    default = subprocess.run([sys.executable, "-c", code, dag_file], env=env, capture_output=True, text=True)
    assert default.stdout.strip() == "@weekly rebuild", default.stderr[-2000:]
    # What a scheduled run does (GKE_INFERENCE_SCHEDULE_MODE) is read at parse time like the schedule.
    env.update(GKE_INFERENCE_SCHEDULE="0 3 * * 1", GKE_INFERENCE_SCHEDULE_MODE="ensure")
    custom = subprocess.run([sys.executable, "-c", code, dag_file], env=env, capture_output=True, text=True)
    assert custom.stdout.strip() == "0 3 * * 1 ensure", custom.stderr[-2000:]


def test_the_cluster_delete_does_not_depend_on_the_workloads_but_later_deletes_need_the_one_before(dagbag):
    """Teardown works when things are broken: a failed workload delete or load-balancer wait does not
    keep the cluster, subnets and VPC; a subnet still needs the cluster gone, the VPC its subnets gone;
    and a teardown that did not start (ensure, or a failed pre-flight) deletes nothing."""
    dag = dagbag.dags["gke_inference_gateway"]
    task = dag.get_task
    for task_id in ("teardown.wait_gateway_released", "teardown.delete_cluster"):
        assert task(task_id).trigger_rule == "all_done_min_one_success", task_id
        assert "teardown.start" in task(task_id).upstream_task_ids, task_id
    for task_id in (
        "teardown.delete_workloads",
        "teardown.sweep_load_balancer",
        "teardown.delete_proxy_subnet",
        "teardown.delete_node_subnet",
        "teardown.delete_network",
        "rebuild_after_teardown",
    ):
        assert task(task_id).trigger_rule == "all_success", task_id
    # The group's tasks take the plan from teardown.start, not plan_run: plan_run's success must not
    # be the "one success" that lets a teardown that never started delete.
    for task_id in ("teardown.wait_gateway_released", "teardown.delete_cluster"):
        assert "plan_run" not in task(task_id).upstream_task_ids, task_id

    def upstream(task_id: str) -> set[str]:
        """Upstreams that order the work, not the ones a task takes values from."""
        return task(task_id).upstream_task_ids - {"plan_run", "teardown.start"}

    assert upstream("teardown.sweep_load_balancer") == {"teardown.delete_cluster"}
    assert upstream("teardown.delete_network") == {
        "teardown.delete_proxy_subnet",
        "teardown.delete_node_subnet",
    }
    assert upstream("rebuild_after_teardown") == {"teardown.delete_network"}
    assert task("choose_mode").downstream_task_ids == {"build", "teardown.start", "plan_changes"}


def test_every_xcom_a_task_takes_comes_from_one_of_its_upstreams(dagbag):
    """No edge is removed by hand: a task that takes another's output (an XComArg) runs after it.
    Tasks whose trigger rules tolerate a skipped upstream get the plan through a task that is
    already their upstream (the group's start, cluster.crds_installed), not by dropping plan_run."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    for dag in dagbag.dags.values():
        for task in dag.tasks:
            for field in task.template_fields:
                for producer, _ in XComArg.iter_xcom_references(getattr(task, field, None)):
                    assert producer.task_id in task.upstream_task_ids, (task.task_id, producer.task_id)
    dag = dagbag.dags["gke_inference_gateway"]
    pool = dag.get_task("gateway.apply_inference_pool")
    assert pool.trigger_rule == "all_success"
    assert "cluster.crds_installed" in pool.upstream_task_ids
    crds_installed = dag.get_task("cluster.crds_installed")
    assert crds_installed.trigger_rule == "none_failed_min_one_success"
    assert crds_installed.upstream_task_ids == {
        "cluster.install_crds_objective_only",
        "cluster.install_crds_full_set",
    }


def test_the_cost_guard_waits_for_the_whole_build_and_leaves_the_run_state_to_it(dagbag):
    """The cleanup gate starts no delete while a build task may still create (all_done on each of
    them); the cleanup group is the teardown group's twin; run_report stays a leaf, so a failed build
    fails the run whatever the cleanup does."""
    dag = dagbag.dags["gke_inference_gateway"]
    build_groups = ("project_network.", "cluster.", "model_server.", "gateway.", "verify.", "body_routing.")
    build = {t.task_id for t in dag.tasks if t.task_id.startswith(build_groups)}
    gate = dag.get_task("cleanup.start")
    assert gate.trigger_rule == "all_done"
    assert build | {"keep_for"} <= gate.upstream_task_ids
    assert set(gate.build_task_ids) == build
    assert dag.get_task("keep_for").upstream_task_ids - {"plan_run"} == {
        "body_routing.check_wrong_model_rejected"
    }
    teardown = sorted(t.task_id.split(".", 1)[1] for t in dag.tasks if t.task_id.startswith("teardown."))
    cleanup = sorted(t.task_id.split(".", 1)[1] for t in dag.tasks if t.task_id.startswith("cleanup."))
    assert teardown == cleanup
    for name in teardown:
        a, b = dag.get_task(f"teardown.{name}"), dag.get_task(f"cleanup.{name}")
        assert (type(a), a.trigger_rule) == (type(b), b.trigger_rule) or name == "start", name
    assert {t.task_id for t in dag.leaves} == {"run_report", "cleanup.delete_network"}


def test_waits_that_start_in_the_triggerer_outlast_their_longest_timeout(dagbag):
    """Airflow 3.3 cuts a wait started in the triggerer at the task's execution_timeout
    (TaskInstance.defer_task); a normal deferral has no such cap."""
    from gke_inference.params import MAX_WAIT_SECONDS

    dag = dagbag.dags["gke_inference_gateway"]
    starting = sorted(task.task_id for task in dag.tasks if getattr(task, "start_from_trigger", False))
    assert starting == [
        "body_routing.wait_body_based_router",
        "cluster.wait_cluster_running",
        "verify.wait_gateway_address",
        "verify.wait_model_pods_ready",
    ]
    for task_id in starting:
        assert dag.get_task(task_id).execution_timeout.total_seconds() > MAX_WAIT_SECONDS, task_id
