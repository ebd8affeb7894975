"""Gateway checks (tutorial 4.2 and 5.1) against the sandbox's data plane, before and after
body-based routing, including the ways they must fail."""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.operators.checks import (
    ChatCompletionCheckOperator,
    GatewayNotReadyError,
    ModelRoutingCheckOperator,
    chat_completion_url,
)
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.params import build_params
from gke_inference.triggers.kubernetes import assess_gateway, assess_pods

DEFAULTS = {name: param.value for name, param in build_params().items()}
RIGHT_MODEL = DEFAULTS["model_name"]
WRONG_MODEL = DEFAULTS["wrong_model_name"]
READY_TIMEOUT = 20.0


def wait_for(probe, what):
    deadline = time.monotonic() + READY_TIMEOUT
    while not (verdict := probe()).done:
        assert time.monotonic() < deadline, f"{what}: {verdict.state}"
        time.sleep(0.1)
    return verdict.result


def serve(cluster, namespace, *, body_routing: bool) -> str:
    """Build the tutorial's serving stack in a namespace; return the Gateway's address."""
    values = {**DEFAULTS, "namespace": namespace}
    HuggingFaceSecretOperator(task_id="hf", namespace=namespace, **cluster.kwargs).execute({})
    manifests = [
        "model-inference-class.yaml",
        "vllm-llama3-1-8b-instruct.yaml",
        "inferencepool",
        "gateway.yaml",
    ]
    if body_routing:
        manifests += ["body-based-router", "body-routing.yaml"]
    ApplyManifestsOperator(task_id="apply", manifest=manifests, values=values, **cluster.kwargs).execute({})
    hook = cluster.hook()
    wait_for(
        lambda: assess_pods(hook.list("v1", "Pod", namespace, {"app": DEFAULTS["model_app_label"]}), 1),
        "model pods Ready",
    )
    if body_routing:
        wait_for(
            lambda: assess_pods(hook.list("v1", "Pod", namespace, {"app": "body-based-router"}), 1), "BBR"
        )
    gateway = "gateway.networking.k8s.io/v1", "Gateway", DEFAULTS["gateway_name"], namespace
    return wait_for(
        lambda: assess_gateway(hook.get(*gateway), DEFAULTS["gateway_name"]), "Gateway programmed"
    )


@pytest.fixture(scope="module")
def catch_all_gateway(kube_cluster, namespace_factory) -> str:
    """Tutorial 4.2 state: the catch-all route, no body-based routing."""
    return serve(kube_cluster, namespace_factory(kube_cluster, "catchall"), body_routing=False)


@pytest.fixture(scope="module")
def model_routing_gateway(kube_cluster, namespace_factory) -> str:
    """Tutorial 5.1 state: the body-based router and the model-only route."""
    return serve(kube_cluster, namespace_factory(kube_cluster, "bodyroute"), body_routing=True)


def chat_check(address, model=RIGHT_MODEL, port=80):
    return ChatCompletionCheckOperator(
        task_id="check_chat_completion",
        gateway_address=address,
        port=port,
        model=model,
        prompt=DEFAULTS["prompt"],
        max_tokens=16,
    )


def routing_check(address, model, expect):
    return ModelRoutingCheckOperator(
        task_id="check_model",
        gateway_address=address,
        model=model,
        expect=expect,
        prompt="hi",
        max_tokens=8,
        route_propagation_window=0,  # a route change needs no time to spread in the sandbox
    )


# Tutorial 4.2


def test_chat_completion_returns_a_reply_and_the_serving_pod(catch_all_gateway):
    result = chat_check(catch_all_gateway).execute({})
    assert result["status"] == 200
    assert result["reply"].strip()
    assert result["pod"].startswith(DEFAULTS["model_app_label"])


def test_model_server_404_is_terminal(catch_all_gateway):
    with pytest.raises(AirflowFailException, match="model server does not serve this model"):
        chat_check(catch_all_gateway, model=WRONG_MODEL).execute({})


def test_gateway_5xx_is_retried_not_failed(catch_all_gateway, sandbox, clean_faults):
    sandbox.faults_add(api="gateway", method="POST", path="/v1/chat/completions", status=503, count=1)
    with pytest.raises(GatewayNotReadyError, match="HTTP 503") as caught:
        chat_check(catch_all_gateway).execute({})
    assert not isinstance(caught.value, AirflowFailException)
    assert chat_check(catch_all_gateway).execute({})["status"] == 200  # the next attempt succeeds


def test_unreachable_gateway_is_retried_not_failed(sandbox):
    unused = sandbox.run(sandbox.sandbox.addresses.allocate)  # a loopback address nothing listens on
    with pytest.raises(GatewayNotReadyError, match="ConnectError"):
        chat_check(unused, port=8080).execute({})


@pytest.mark.parametrize("address", ["", None])
def test_missing_gateway_address_fails(address):
    with pytest.raises(AirflowFailException, match="No gateway address"):
        chat_check(address).execute({})


def test_url_building():
    assert chat_completion_url("10.1.2.3", 80) == "http://10.1.2.3/v1/chat/completions"
    assert chat_completion_url("10.1.2.3", 8080) == "http://10.1.2.3:8080/v1/chat/completions"
    assert chat_completion_url("2001:db8::1", 80) == "http://[2001:db8::1]/v1/chat/completions"


def test_port_and_max_tokens_are_ints_not_rendered_strings():
    with pytest.raises(TypeError, match="port must be an int"):
        chat_check("10.1.2.3", port="8080")
    with pytest.raises(TypeError, match="max_tokens must be an int"):
        ChatCompletionCheckOperator(task_id="c", gateway_address="a", model="m", max_tokens="16")
    with pytest.raises(AirflowFailException, match="port must be an int"):
        chat_completion_url("10.1.2.3", "80")  # a value that arrived at run time


# Tutorial 5.1


def test_without_body_routing_a_wrong_model_reaches_vllm_and_the_check_says_so(catch_all_gateway):
    with pytest.raises(AirflowFailException, match="body-based routing is not in effect"):
        routing_check(catch_all_gateway, WRONG_MODEL, "rejected").execute({})


def test_a_model_that_should_be_refused_but_gets_200_fails(catch_all_gateway):
    with pytest.raises(AirflowFailException, match="wrong model accepted: body-based routing missing"):
        routing_check(catch_all_gateway, RIGHT_MODEL, "rejected").execute({})


def test_with_body_routing_the_right_model_is_accepted(model_routing_gateway):
    result = routing_check(model_routing_gateway, RIGHT_MODEL, "accepted").execute({})
    assert result["status"] == 200 and result["reply"]


def test_with_body_routing_a_wrong_model_gets_the_gateways_404(model_routing_gateway):
    result = routing_check(model_routing_gateway, WRONG_MODEL, "rejected").execute({})
    assert result["status"] == 404 and result["pod"] is None


def test_chat_check_treats_the_gateways_404_as_not_ready_yet(model_routing_gateway):
    with pytest.raises(GatewayNotReadyError, match="no route matched"):
        chat_check(model_routing_gateway, model=WRONG_MODEL).execute({})


def test_expectations_are_validated_at_parse_time():
    with pytest.raises(ValueError, match="expect must be"):
        ModelRoutingCheckOperator(task_id="x", gateway_address="a", model="m", expect="maybe")
    with pytest.raises(ValueError, match="expect_status must be 200 or 404"):
        ModelRoutingCheckOperator(task_id="x", gateway_address="a", model="m", expect_status=500)
    assert (
        ModelRoutingCheckOperator(
            task_id="x", gateway_address="a", model="m", expect_status=404
        ).expect_status
        == 404
    )
