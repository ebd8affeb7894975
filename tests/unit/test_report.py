"""The run report sorts every task's XCom into created and found, whatever shape the task reports in."""

from __future__ import annotations

from gke_inference.operators.report import outcomes

FIRST_RUN = {
    "project_network.enable_apis": {
        "project_id": "p",
        "enabled": ["container.googleapis.com"],
        "already_enabled": ["compute.googleapis.com"],
    },
    "project_network.ensure_network": {"project_id": "p", "name": "inference-vpc", "created": True},
    "cluster.ensure_cluster": {"name": "lab", "created": False, "status": "RUNNING"},
    "cluster.install_crds_objective_only": {
        "crd_set": "objective_only",
        "created": ["CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io"],
    },
    "model_server.create_hf_secret": {
        "secret": "Secret/default/hf-token",
        "key": "hf_api_token",
        "action": "created",
    },
    "gateway.apply_gateway": {
        "created": ["Gateway/default/inference-gateway"],
        "unchanged": ["HTTPRoute/default/r"],
    },
    "verify.check_chat_completion": {"status": 200, "reply": "hi", "pod": "vllm-0"},
    "preflight": {"checked": True},
    "teardown.delete_cluster": None,
    "plan_run": "not a dict",
}
RERUN = {
    "project_network.enable_apis": {
        "project_id": "p",
        "enabled": [],
        "already_enabled": ["compute.googleapis.com", "container.googleapis.com"],
    },
    "project_network.ensure_network": {"project_id": "p", "name": "inference-vpc", "created": False},
    "cluster.ensure_cluster": {"name": "lab", "created": False, "status": "RUNNING"},
    "cluster.install_crds_objective_only": {
        "crd_set": "objective_only",
        "unchanged": ["CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io"],
    },
    "model_server.create_hf_secret": {
        "secret": "Secret/default/hf-token",
        "key": "hf_api_token",
        "action": "unchanged",
    },
    "gateway.apply_gateway": {
        "updated": ["Gateway/default/inference-gateway"],
        "unchanged": ["HTTPRoute/default/r"],
    },
}


def test_a_first_run_reports_what_it_created_and_what_was_there():
    created, found = outcomes(FIRST_RUN)
    assert created == {
        "container.googleapis.com",
        "inference-vpc",
        "CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io",
        "Secret/default/hf-token",
        "Gateway/default/inference-gateway",
    }
    assert found == {"compute.googleapis.com", "lab", "HTTPRoute/default/r"}


def test_a_rerun_lists_everything_the_first_run_touched_under_found():
    first_created, first_found = outcomes(FIRST_RUN)
    created, found = outcomes(RERUN)
    assert created == set()
    assert found == first_created | first_found


def test_a_single_resource_without_a_name_is_reported_by_its_task():
    assert outcomes({"cluster.ensure_cluster": {"created": True}}) == ({"cluster.ensure_cluster"}, set())


def test_an_object_created_then_applied_again_by_a_later_task_counts_as_created():
    results = {
        "gateway.apply_gateway": {"created": ["HTTPRoute/default/llm-route"]},
        "body_routing.apply_body_routing_route": {"updated": ["HTTPRoute/default/llm-route"]},
    }
    assert outcomes(results) == ({"HTTPRoute/default/llm-route"}, set())
