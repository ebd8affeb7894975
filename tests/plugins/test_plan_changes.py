"""mode plan (issue 15 §2): the DAG's plan_changes task, run against the twin, reports what a run
would create, find unchanged or find drifted, and what a rebuild or teardown would delete.

The environment is built by the DAG's own tasks (rendered with the same plan), so "unchanged" means
"what the DAG builds, read back". Every plan is counted in the twin's request log: on the GCP and
Kubernetes APIs nothing but GET (reads and lists); token requests (POST) are the only other calls.
"""

from __future__ import annotations

import copy
import time

import pytest

from gke_inference.operators.plan import PlanRunOperator
from gke_inference.operators.plan_changes import PlanChangesOperator
from gke_inference.operators.project_network import TUTORIAL_SERVICES
from gke_inference.ownership import K8S_OWNER_LABEL_KEY, OWNER_LABEL_VALUE
from gke_inference.params import build_params
from tests.plugins.conftest import _add_project, unique

TWIN_APIS = {"compute", "serviceusage", "container", "kube"}
TOKEN_APIS = {"oauth", "iamcredentials"}
BUILD_STEPS = (
    "project_network.enable_apis",
    "project_network.ensure_network",
    "project_network.ensure_node_subnet",
    "project_network.ensure_proxy_subnet",
    "cluster.ensure_cluster",
)
APPLY_STEPS = (
    "cluster.install_crds_objective_only",
    "model_server.apply_compute_class",
    "model_server.create_hf_secret",
    "model_server.deploy_vllm",
    "gateway.apply_inference_pool",
    "gateway.apply_gateway",
    "body_routing.install_body_based_router",
    "body_routing.apply_body_routing_route",
)
CLUSTER_TIMEOUT = 30.0


class FakeTi:
    """What rendering needs of a task instance: plan_run's XComs (each key, and the whole plan)."""

    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.pushed: dict = {}

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        assert task_ids == "plan_run", task_ids
        return self.plan if key == "return_value" else self.plan[key]

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


def plan_for(project_id: str) -> dict:
    params = {name: param.value for name, param in build_params().items()}
    return {**params, "project_id": project_id, "mode": "plan", "requested_mode": "plan"}


def context_for(project_id: str, **params) -> dict:
    return {"ti": FakeTi({**plan_for(project_id), **params}), "run_id": "manual__plan_test"}


def plan_task(dag) -> PlanChangesOperator:
    return dag.get_task("plan_changes")


def rendered(dag, task_id: str, context: dict):
    """The DAG's task with its arguments rendered as its run would (a copy: the DAG stays as parsed)."""
    task = copy.copy(dag.get_task(task_id))
    task.render_template_fields(context)
    return task


def execute_plan(dag, context: dict) -> dict:
    plan_task(dag)
    return rendered(dag, "plan_changes", context).execute(context)


def run_plan(dag, sandbox, project_id: str) -> tuple[dict, list[dict]]:
    """The plan's report and the twin's requests it made."""
    since = len(sandbox.requests())
    report = execute_plan(dag, context_for(project_id))
    return report, sandbox.requests()[since:]


def writes(requests: list[dict]) -> list[str]:
    """Every request that could change something in the twin: not a read, not a token."""
    return [
        f"{e['api']} {e['method']} {e['path']}"
        for e in requests
        if (e["api"] in TWIN_APIS and e["method"] != "GET") or (e["api"] not in TWIN_APIS | TOKEN_APIS)
    ]


def test_mode_plan_branches_to_the_plan_task_alone(dag):
    assert isinstance(plan_task(dag), PlanChangesOperator)
    assert isinstance(dag.get_task("plan_run"), PlanRunOperator)
    choose_mode = copy.copy(dag.get_task("choose_mode"))
    choose_mode.mode = "plan"
    assert choose_mode.choose_branch({}) == "plan_changes"
    assert plan_task(dag).upstream_task_ids == {"plan_run", "choose_mode"}


# An empty project: everything is created, and there is no cluster to ask


@pytest.fixture
def empty_project(sandbox, airflow_connections_env) -> str:
    project_id = unique("plan-empty")
    sandbox.run(_add_project, sandbox.sandbox, project_id, ())
    return project_id


def test_an_empty_project_plans_every_object_as_create(dag, sandbox, empty_project):
    report, requests = run_plan(dag, sandbox, empty_project)

    assert writes(requests) == []
    assert not [e for e in requests if e["api"] == "kube"], "a cluster that does not exist was asked"
    assert report["differs"] == report["would_delete"] == []
    # A new project has a few APIs on by default (the twin: sandbox.gcp.state); nothing else exists.
    assert [ref for ref in report["unchanged"] if not ref.startswith("Api/")] == []
    create = report["create"]
    assert {f"Api/{service}" for service in TUTORIAL_SERVICES} <= set(create) | set(report["unchanged"])
    assert {
        "Network/inference-vpc",
        "Subnetwork/us-central1/inference-subnet",
        "Subnetwork/us-central1/proxy-only-subnet",
        "Cluster/us-central1/inference-gateway-lab",
        "CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io",
        "ComputeClass/model-inference-class",
        "Secret/default/hf-token",
        "Deployment/default/vllm-llama3-1-8b-instruct",
        "InferencePool/default/vllm-llama-pool",
        "Gateway/default/inference-gateway",
        "HTTPRoute/default/llm-route",
    } <= set(create)
    assert len(create) == len(set(create)), "an object was planned twice"


def test_the_plan_is_written_as_the_run_reports_markdown(dag, sandbox, empty_project):
    context = context_for(empty_project)
    report = execute_plan(dag, context)
    note = context["ti"].pushed["run_report_markdown"]
    assert note.startswith(f"### Plan: what a run would change in `{empty_project}` (nothing was changed)")
    assert f"**Create:** {len(report['create'])}" in note or f"**Create ({len(report['create'])}):**" in note


def test_a_vpc_to_bring_that_is_missing_is_reported_missing_not_created(dag, sandbox, empty_project):
    context = context_for(empty_project, use_existing_network=True)
    since = len(sandbox.requests())
    report = execute_plan(dag, context)

    assert writes(sandbox.requests()[since:]) == []
    assert report["missing"] == ["Network/inference-vpc", "Subnetwork/us-central1/inference-subnet"]
    # The proxy-only subnet is created even then (tutorial 1.3).
    assert "Subnetwork/us-central1/proxy-only-subnet" in report["create"]
    assert "Network/inference-vpc" not in report["create"]


def test_any_active_proxy_only_subnet_of_the_region_satisfies_the_plan(dag, sandbox, airflow_connections_env):
    """As the ensure does (GCP allows one ACTIVE proxy-only subnet per region and VPC)."""
    from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
    from gke_inference.ownership import NETWORK_DESCRIPTION

    project_id = unique("plan-proxy")
    sandbox.run(_add_project, sandbox.sandbox, project_id, TUTORIAL_SERVICES)
    hook = ComputeNetworkHook()
    hook.ensure_network("inference-vpc", project_id, description=NETWORK_DESCRIPTION)
    theirs = SubnetworkSpec(
        "their-proxy", "us-central1", "10.130.0.0/23", purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE"
    )
    hook.ensure_subnetwork(theirs, "inference-vpc", project_id, description="made by hand")

    report, requests = run_plan(dag, sandbox, project_id)

    assert writes(requests) == []
    assert "Subnetwork/us-central1/proxy-only-subnet" in report["unchanged"]
    assert "Subnetwork/us-central1/inference-subnet" in report["create"]


# A built environment: built by the DAG's own tasks, then planned


def wait_running(sandbox, project_id: str) -> None:
    from gke_inference.hooks.gke import GKEClusterHook

    hook = GKEClusterHook(location="us-central1")
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    while hook.get_cluster("inference-gateway-lab", project_id).status.name != "RUNNING":
        assert time.monotonic() < deadline, "the twin's cluster did not become RUNNING"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def built_project(dag, sandbox, airflow_connections_env) -> str:
    """A project the DAG's ensure and apply tasks built (what an ensure run does, minus the waits)."""
    project_id = unique("plan-built")
    sandbox.run(_add_project, sandbox.sandbox, project_id, TUTORIAL_SERVICES)
    context = context_for(project_id)
    for task_id in BUILD_STEPS:
        rendered(dag, task_id, context).execute(context)
    wait_running(sandbox, project_id)
    for task_id in APPLY_STEPS:
        rendered(dag, task_id, context).execute(context)
    return project_id


def test_a_built_environment_plans_every_object_as_unchanged(dag, sandbox, built_project):
    report, requests = run_plan(dag, sandbox, built_project)

    assert writes(requests) == []
    assert [e for e in requests if e["api"] == "kube"], "the live objects were not read"
    assert report["create"] == [] and report["differs"] == []
    assert {
        "Network/inference-vpc",
        "Subnetwork/us-central1/inference-subnet",
        "Subnetwork/us-central1/proxy-only-subnet",
        "Cluster/us-central1/inference-gateway-lab",
        "Secret/default/hf-token",
        "Deployment/default/vllm-llama3-1-8b-instruct",
        "HTTPRoute/default/llm-route",
    } <= set(report["unchanged"])


def test_a_rebuild_would_delete_only_what_the_dag_owns(dag, sandbox, built_project):
    report, requests = run_plan(dag, sandbox, built_project)

    assert writes(requests) == []
    would_delete = set(report["would_delete"])
    assert {
        "Cluster/us-central1/inference-gateway-lab",
        "Subnetwork/us-central1/inference-subnet",
        "Subnetwork/us-central1/proxy-only-subnet",
        "Network/inference-vpc",
        "Secret/default/hf-token",
        "Deployment/default/vllm-llama3-1-8b-instruct",
        "Gateway/default/inference-gateway",
        "HTTPRoute/default/llm-route",
    } <= would_delete
    # The CRDs stay (other workloads may use them), as the teardown leaves them.
    assert not [ref for ref in would_delete if ref.startswith("CustomResourceDefinition/")]
    # Still there: the plan deleted nothing.
    assert execute_plan(dag, context_for(built_project))["create"] == []


@pytest.fixture
def scaled_by_hand(dag, built_project):
    """Someone scaled the model Deployment to 2; it is put back afterwards."""
    context = context_for(built_project)
    hook = rendered(dag, "model_server.deploy_vllm", context).kube_hook
    deployment = hook.get("apps/v1", "Deployment", "vllm-llama3-1-8b-instruct", "default")
    original = deployment["spec"]["replicas"]
    hook.dynamic_client.patch(
        hook.resource("apps/v1", "Deployment"),
        name="vllm-llama3-1-8b-instruct",
        namespace="default",
        body={"spec": {"replicas": original + 1}},
        content_type="application/merge-patch+json",
    )
    yield original
    rendered(dag, "model_server.deploy_vllm", context).execute(context)


def test_a_drifted_field_is_reported_with_have_and_want(dag, sandbox, built_project, scaled_by_hand):
    report, requests = run_plan(dag, sandbox, built_project)

    assert writes(requests) == []
    assert report["differs"] == [
        f"Deployment/default/vllm-llama3-1-8b-instruct (spec.replicas: {scaled_by_hand + 1} -> {scaled_by_hand})"
    ]
    assert "Deployment/default/vllm-llama3-1-8b-instruct" not in report["unchanged"]
    assert report["create"] == []


@pytest.fixture
def compute_class_disowned(dag, built_project):
    """Someone took the DAG's label off the ComputeClass; it is put back afterwards."""
    context = context_for(built_project)
    hook = rendered(dag, "model_server.apply_compute_class", context).kube_hook
    hook.dynamic_client.patch(
        hook.resource("cloud.google.com/v1", "ComputeClass"),
        name="model-inference-class",
        body={"metadata": {"labels": {K8S_OWNER_LABEL_KEY: None}}},
        content_type="application/merge-patch+json",
    )
    yield "ComputeClass/model-inference-class"
    rendered(dag, "model_server.apply_compute_class", context).execute(context)


def test_an_object_without_the_dags_label_is_kept_by_a_rebuild(
    dag, sandbox, built_project, compute_class_disowned
):
    report, requests = run_plan(dag, sandbox, built_project)

    assert writes(requests) == []
    assert compute_class_disowned in report["not_owned"]
    assert compute_class_disowned not in report["would_delete"]
    assert "Deployment/default/vllm-llama3-1-8b-instruct" in report["would_delete"]
    assert report["differs"] == [
        f"{compute_class_disowned} (metadata.labels.{K8S_OWNER_LABEL_KEY}: absent -> '{OWNER_LABEL_VALUE}')"
    ]
