"""A wait starts in the triggerer: on a real scheduler + triggerer, no worker runs the sensor before
it defers; a worker only runs the resume.

A small DAG (in this test's own DAGs folder and Airflow home) has a plan_run-like task that pushes
its conf as XComs and a ClusterRunningSensor that takes every input from them, as the real DAG
does. The sensor is subclassed only to write a line each time a worker runs ``execute`` or
``execute_complete``. The session's twin holds the cluster PROVISIONING until the sensor is
deferred and has polled it, then releases it: the wait is real, and no worker ran before it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, GKEClusterHook
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import airflow_connection_env
from tests.plugins.conftest import REGION, _add_project, unique
from tests.resilience.stack.conftest import AirflowApi, started_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

DAG_ID = "start_from_trigger_proof"
SENSOR = "wait_cluster_running"
HELD_S = 3600  # PROVISIONING until the test releases it
RUN_TIMEOUT_S = 120
DAG_FILE = """
import pathlib

import pendulum
from airflow.sdk import DAG, BaseOperator

from gke_inference.sensors.cluster import ClusterRunningSensor

RECORD = pathlib.Path({record!r})


class PlanRun(BaseOperator):
    def execute(self, context):
        for key, value in context["dag_run"].conf.items():
            context["ti"].xcom_push(key=key, value=value)


class RecordedSensor(ClusterRunningSensor):
    def execute(self, context):
        with RECORD.open("a") as record:
            record.write("execute\\n")
        return super().execute(context)

    def execute_complete(self, context, event):
        with RECORD.open("a") as record:
            record.write("execute_complete\\n")
        return super().execute_complete(context, event)


with DAG({dag_id!r}, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), schedule=None,
         default_args={{"retries": 0}}):
    plan = PlanRun(task_id="plan_run").output
    RecordedSensor(
        task_id={sensor!r},
        cluster_name=plan["cluster_name"],
        location=plan["region"],
        project_id=plan["project_id"],
        gcp_conn_id=plan["gcp_conn_id"],
        timeout=plan["cluster_timeout"],
        poll_interval=1,
    )
"""


@pytest.fixture(scope="module")
def record_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("record") / "worker_runs.txt"


@pytest.fixture(scope="module")
def proof_stack(sandbox, record_file, tmp_path_factory) -> Iterator[AirflowStack]:
    dags = tmp_path_factory.mktemp("dags")
    (dags / "start_from_trigger_proof.py").write_text(
        DAG_FILE.format(record=str(record_file), dag_id=DAG_ID, sensor=SENSOR)
    )
    env = {
        **airflow_connection_env(sandbox.info),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    yield from started_stack(tmp_path_factory, env)


@pytest.fixture
def provisioning_cluster(sandbox, slow_provisioning, monkeypatch) -> dict:
    """A cluster held PROVISIONING until the test releases it; its plan values (the run's conf)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", sandbox.info["airflow_connections"]["google_cloud_default"]
    )
    project = unique("proj")
    sandbox.run(
        _add_project, sandbox.sandbox, project, ("compute.googleapis.com", "container.googleapis.com")
    )
    network, subnet, name = unique("vpc"), unique("nodes"), unique("sft")
    compute = ComputeNetworkHook()
    compute.ensure_network(network, project, description=NETWORK_DESCRIPTION)
    ranges = {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"}
    spec = SubnetworkSpec(subnet, REGION, "10.0.0.0/20", ranges)
    compute.ensure_subnetwork(spec, network, project, description=NETWORK_DESCRIPTION)
    slow_provisioning(HELD_S)
    cluster = AutopilotClusterSpec(name, network, subnet, "pods-range", "services-range", "RAPID", GCP_LABELS)
    GKEClusterHook(location=REGION).create_cluster(cluster.to_cluster(), project)
    return {
        "project_id": project,
        "region": REGION,
        "cluster_name": name,
        "gcp_conn_id": "google_cloud_default",
        "cluster_timeout": 120,
    }


def wait_dag_parsed(api: AirflowApi, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while api.request("GET", f"/api/v2/dags/{DAG_ID}").status_code != 200:
        assert time.monotonic() < deadline, f"{DAG_ID} was not parsed within {timeout} s"
        time.sleep(1)


def trigger_run(api: AirflowApi, conf: dict) -> str:
    run_id = f"sft__{secrets.token_hex(6)}"
    body = {"logical_date": None, "conf": conf, "dag_run_id": run_id}
    answer = api.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=body)
    assert answer.status_code == 200, answer.text
    return run_id


def wait_until(what: str, check, timeout: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.5)
    return result


def test_the_wait_starts_in_the_triggerer_and_only_its_resume_runs_on_a_worker(
    proof_stack, provisioning_cluster, record_file, sandbox, slow_provisioning
):
    api = AirflowApi(proof_stack)
    wait_dag_parsed(api)
    cluster_path = f"/clusters/{provisioning_cluster['cluster_name']}"

    def polls() -> list[dict]:
        container = sandbox.requests("container")
        return [e for e in container if e["method"] == "GET" and e["path"].endswith(cluster_path)]

    run_id = trigger_run(api, provisioning_cluster)
    ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{SENSOR}"
    wait_until("deferred sensor", lambda: api.get_json(ti_path)["state"] == "deferred")
    wait_until("poll of the PROVISIONING cluster", polls)

    # Deferred and polling, and no worker has run the sensor.
    assert not record_file.exists() or record_file.read_text() == ""
    slow_provisioning(0)  # release the cluster: the trigger's next poll sees it RUNNING
    wait_until("finished sensor", lambda: api.get_json(ti_path)["state"] in {"success", "failed"})

    ti = api.get_json(ti_path)
    assert (ti["state"], ti["try_number"]) == ("success", 1), ti
    # A worker ran the sensor once, and that run was the resume.
    assert record_file.read_text().split() == ["execute_complete"]
    # The triggerer built the start itself; it polled the cluster named in plan_run's XComs (it
    # rendered them), PROVISIONING then RUNNING.
    triggerer_log = (proof_stack.logdir / "triggerer.log").read_text()
    assert f"Start from trigger enabled for task {SENSOR}" in triggerer_log
    assert len(polls()) >= 2
