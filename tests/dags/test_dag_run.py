"""The whole DAG against the shared sandbox: a first run, a rerun, and a run with other params.

Whole-DAG runs pay Airflow's fixed start-up (~10 s each), so only the paths that need the whole
DAG live here; faults and edge cases are covered at the hook, operator and trigger level.
"""

from __future__ import annotations

import pytest
from airflow.sdk import BaseBranchOperator

from gke_inference.operators.project_network import TUTORIAL_SERVICES
from gke_inference.params import build_params
from sandbox.core.faults import creating_requests
from sandbox.testing import GoogleClients
from scripts.demo import run_report
from tests.dags.test_endpoint_asset import announced_for

DAG_ID = "gke_inference_gateway"
pytestmark = pytest.mark.dag


def run(dag, **conf):
    dag_run = dag.test(run_conf={"gateway_port": 8080, **conf})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return dag_run, states


@pytest.fixture(scope="module")
def first_run(dag, sandbox):
    """The module's first run on the default names: each test that needs it gets the same run, in
    whatever order the tests run."""
    return run(dag)


def test_first_run_builds_everything_and_the_checks_pass(first_run, sandbox):
    dag_run, states = first_run
    assert dag_run.state == "success", states
    skipped = {task for task, state in states.items() if state == "skipped"}
    assert skipped == {
        "teardown.start",
        "teardown.delete_workloads",
        "teardown.wait_gateway_released",
        "teardown.delete_cluster",
        "teardown.sweep_load_balancer",
        "teardown.delete_proxy_subnet",
        "teardown.delete_node_subnet",
        "teardown.delete_network",
        "rebuild_after_teardown",
        "plan_changes",  # mode plan only
        "stop_after_plan",
        "cluster.install_crds_full_set",  # the sandbox's cluster is past 1.34.0-gke.1626000
        # the cost guard: keep_for_hours 0 keeps the environment, so the cleanup group never opens
        "keep_for",
        *(f"cleanup.{task}" for task in ("start", "delete_workloads", "wait_gateway_released")),
        *(f"cleanup.{task}" for task in ("delete_cluster", "sweep_load_balancer", "delete_proxy_subnet")),
        *(f"cleanup.{task}" for task in ("delete_node_subnet", "delete_network")),
    }
    assert all(state == "success" for task, state in states.items() if task not in skipped), states
    report = run_report(dag_run)
    assert report["wrong_model_status"] == 404
    assert report["model_reply"]
    assert report["gateway_url"].startswith("http://127.")
    assert "Gateway/default/inference-gateway" in report["created"]
    # The verified endpoint is announced as an Asset event (tests/dags/test_endpoint_asset.py).
    [announced] = [e for e in announced_for(report) if e["run_id"] == dag_run.run_id]
    assert (announced["state"], announced["gateway_url"], announced["gke_version"][:2]) == (
        "up",
        report["gateway_url"],
        "1.",
    )


def test_the_first_runs_report_tells_what_happened(first_run, dag, sandbox):
    dag_run, states = first_run
    report = run_report(dag_run)
    defaults = {name: param.value for name, param in build_params().items()}

    assert report["project_id"] == sandbox.info["project_id"]
    assert dag_run.run_type == "manual" and report["mode"] == "ensure", "a manual run defaults to ensure"
    assert report["wrong_model_status"] == 404
    cluster_key = f"projects/{report['project_id']}/locations/us-central1/clusters/{defaults['cluster_name']}"
    store = sandbox.sandbox.clusters[cluster_key].store
    model_pods = sandbox.run(store.list, "v1", "Pod", "default", {"app": defaults["model_app_label"]})
    assert report["served_by_pod"] in {pod["metadata"]["name"] for pod in model_pods}
    touched = set(report["created"]) | set(report["found"])
    assert not set(report["created"]) & set(report["found"])
    assert {
        *(f"Api/{service}" for service in TUTORIAL_SERVICES),
        f"Network/{defaults['network_name']}",
        f"Subnetwork/us-central1/{defaults['subnet_name']}",
        f"Subnetwork/us-central1/{defaults['proxy_subnet_name']}",
        f"Cluster/us-central1/{defaults['cluster_name']}",
        "Secret/default/hf-token",
        "Gateway/default/inference-gateway",
        f"Deployment/default/{defaults['model_app_label']}",
    } <= touched
    assert report["section_seconds"] == pytest.approx(section_spans(dag, dag_run, states), abs=1.5)


def section_spans(dag, dag_run, states: dict) -> dict[str, float]:
    """Each section's span from the metadata DB: first task start to last task end, of the tasks that
    ran. A branch task ends by raising DownstreamTasksSkipped, so Airflow's task runner calls no
    post_execute for it (airflow/sdk/execution_time/task_runner.py) and it records no timing."""
    spans: dict[str, list] = {}
    for ti in dag_run.get_task_instances():
        task = dag.get_task(ti.task_id)
        if (
            states[ti.task_id] != "success"
            or ti.task_id == "run_report"
            or isinstance(task, BaseBranchOperator)
        ):
            continue
        section = spans.setdefault(ti.task_id.split(".", 1)[0], [ti.start_date, ti.end_date])
        section[0], section[1] = min(section[0], ti.start_date), max(section[1], ti.end_date)
    return {name: (end - start).total_seconds() for name, (start, end) in spans.items()}


def test_rerun_on_the_finished_environment_creates_nothing(first_run, dag, sandbox):
    first_report = run_report(first_run[0])
    before = len(sandbox.requests())
    dag_run, states = run(dag)
    assert dag_run.state == "success", states
    assert creating_requests(sandbox.requests()[before:]) == []
    report = run_report(dag_run)
    assert report["created"] == []
    assert set(report["found"]) == set(first_report["created"]) | set(first_report["found"])


def test_non_default_params_are_what_the_sandbox_ends_up_with(dag, sandbox):
    conf = {
        "region": "europe-west4",
        "network_name": "other-vpc",
        "subnet_name": "other-subnet",
        "proxy_subnet_name": "other-proxy",
        "subnet_range": "172.16.0.0/20",
        "pods_range_name": "other-pods",
        "pods_range": "172.20.0.0/14",
        "services_range_name": "other-services",
        "services_range": "172.24.0.0/20",
        "proxy_subnet_range": "172.25.0.0/23",
        "cluster_name": "other-cluster",
        "replicas": 2,
        "model_name": "Qwen/Qwen2.5-7B-Instruct",
        "model_app_label": "vllm-qwen",
        "pool_name": "qwen-pool",
        "gateway_name": "other-gateway",
        "gateway_port": 8081,
    }
    dag_run, states = run(dag, **conf)
    assert dag_run.state == "success", states

    clients = GoogleClients(sandbox.info)
    subnet = clients.subnetworks.get(
        project=clients.project, region="europe-west4", subnetwork="other-subnet"
    )
    assert subnet.ip_cidr_range == "172.16.0.0/20"
    assert {r.range_name: r.ip_cidr_range for r in subnet.secondary_ip_ranges} == {
        "other-pods": "172.20.0.0/14",
        "other-services": "172.24.0.0/20",
    }
    assert subnet.network.endswith("/networks/other-vpc")
    cluster_key = f"projects/{sandbox.info['project_id']}/locations/europe-west4/clusters/other-cluster"
    cluster = sandbox.sandbox.clusters[cluster_key]
    deployment = sandbox.run(cluster.store.get, "apps/v1", "Deployment", "default", "vllm-qwen")
    assert deployment["spec"]["replicas"] == 2
    args = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "Qwen/Qwen2.5-7B-Instruct" in args
    pool = sandbox.run(
        cluster.store.get, "inference.networking.k8s.io/v1", "InferencePool", "default", "qwen-pool"
    )
    assert pool["spec"]["selector"]["matchLabels"] == {"app": "vllm-qwen"}
    gateway = sandbox.run(
        cluster.store.get, "gateway.networking.k8s.io/v1", "Gateway", "default", "other-gateway"
    )
    assert gateway["spec"]["listeners"][0]["port"] == 8081
    ready = [
        pod
        for pod in sandbox.run(cluster.store.list, "v1", "Pod", "default", {"app": "vllm-qwen"})
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]
    assert len(ready) == 2
