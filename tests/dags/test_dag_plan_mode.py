"""mode plan, the whole DAG (issue 15 §2): on an empty project the run succeeds, reports every object
as to be created, builds nothing and asks the twin's GCP and Kubernetes APIs nothing but reads."""

from __future__ import annotations

import pytest

from gke_inference.operators.project_network import TUTORIAL_SERVICES
from tests.plugins.conftest import _add_project, unique

pytestmark = pytest.mark.dag
TWIN_APIS = {"compute", "serviceusage", "container", "kube"}
TOKEN_APIS = {"oauth", "iamcredentials"}


def test_a_plan_run_on_an_empty_project_reports_everything_as_create_and_only_reads(dag, sandbox):
    project_id = unique("plan-dag")
    sandbox.run(_add_project, sandbox.sandbox, project_id, ())
    before = len(sandbox.requests())

    dag_run = dag.test(run_conf={"mode": "plan", "project_id": project_id})

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert states["plan_changes"] == "success"
    ran = {task_id for task_id, state in states.items() if state == "success"}
    assert ran == {"plan_run", "preflight", "choose_mode", "plan_changes", "stop_after_plan"}, states
    requests = sandbox.requests()[before:]
    writes = [
        f"{e['api']} {e['method']} {e['path']}"
        for e in requests
        if e["method"] != "GET" and not (e["api"] in TOKEN_APIS and e["method"] == "POST")
    ]
    assert writes == []
    assert not [e for e in requests if e["api"] == "kube"], "there is no cluster to ask"
    assert project_id not in {key[0] for key in sandbox.sandbox.gcp.networks}
    report = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "plan_changes").xcom_pull(
        task_ids="plan_changes"
    )
    assert report["mode"] == "plan" and report["project_id"] == project_id
    assert report["differs"] == report["would_delete"] == []
    assert [ref for ref in report["unchanged"] if not ref.startswith("Api/")] == []
    assert {f"Api/{service}" for service in TUTORIAL_SERVICES} <= set(report["create"]) | set(
        report["unchanged"]
    )
    assert {
        "Network/inference-vpc",
        "Cluster/us-central1/inference-gateway-lab",
        "Deployment/default/vllm-llama3-1-8b-instruct",
        "HTTPRoute/default/llm-route",
    } <= set(report["create"])
