"""Say what vanished (issue 13, section 5): when a wait or a check fails, look at what it depends on
(cluster, Gateway, InferencePool) and say which is gone, in the tutorial's words, without retries."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks.gke import GKEClusterHook
from gke_inference.operators.checks import ChatCompletionCheckOperator, GatewayNotReadyError
from gke_inference.sensors.kubernetes import PodsReadySensor
from gke_inference.triggers.kubernetes import GatewayAddressTrigger, PodsReadyTrigger
from tests.plugins.conftest import GCP_CONN_ID, _add_project, unique


def window(seconds: float = 60) -> dict:
    now = time.time()
    return {"started_at": now, "deadline": now + seconds, "poll_interval": 0.1}


async def first_event(trigger, timeout: float = 30) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(first(), timeout)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_cluster_deleted_during_the_pods_wait_is_named(cluster_factory, namespace_factory):
    cluster = cluster_factory(proxy_only_subnet=False)
    namespace = namespace_factory(cluster)
    trigger = PodsReadyTrigger(
        **cluster.kwargs, namespace=namespace, label_selector="app=never", replicas=1, **window()
    )
    waiting = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.5)
    gke = GKEClusterHook(location=cluster.location, gcp_conn_id=GCP_CONN_ID)
    started = time.monotonic()
    await asyncio.to_thread(gke.delete_cluster, cluster.cluster_name, cluster.project_id)

    event = await waiting

    assert event["status"] == "failed", event
    assert event["message"].startswith("The cluster inference-gateway-lab (tutorial 2.1) no longer exists")
    assert time.monotonic() - started < 20, "the wait went on after the cluster was gone"
    sensor = PodsReadySensor(task_id="p", label_selector="app=never", wait_timeout=60, **cluster.kwargs)
    with pytest.raises(AirflowFailException, match=r"no longer exists.*\(tutorial 4\.1\)"):
        sensor.execute_complete({}, event)


async def test_a_gateway_deleted_before_its_address_is_named(kube_cluster, namespace):
    trigger = GatewayAddressTrigger(
        **kube_cluster.kwargs, namespace=namespace, gateway_name="inference-gateway", **window()
    )

    event = await first_event(trigger)

    assert event["status"] == "failed", event
    assert f"The Gateway {namespace}/inference-gateway (tutorial 3.4) no longer exists" in event["message"]


async def test_a_project_whose_container_api_is_off_says_the_cluster_is_gone(
    sandbox, airflow_connections_env
):
    """What a restarted twin (or a reset project) answers: the Kubernetes Engine API is disabled."""
    project = unique("reset")
    sandbox.run(_add_project, sandbox.sandbox, project, ("compute.googleapis.com",))
    trigger = PodsReadyTrigger(
        project_id=project,
        location="us-central1",
        cluster_name="inference-gateway-lab",
        gcp_conn_id=GCP_CONN_ID,
        namespace="default",
        label_selector="app=x",
        replicas=1,
        **window(),
    )

    event = await first_event(trigger)

    assert event["status"] == "failed", event
    assert "The cluster inference-gateway-lab (tutorial 2.1) no longer exists" in event["message"]
    assert "Kubernetes Engine API is disabled" in event["message"]


def check(cluster_kwargs: dict, **extra) -> ChatCompletionCheckOperator:
    return ChatCompletionCheckOperator(
        task_id="check",
        gateway_address="127.0.0.1",
        port=closed_port(),
        model="m",
        prompt="hi",
        max_tokens=8,
        request_timeout=5,
        **cluster_kwargs,
        **extra,
    )


def test_a_check_that_cannot_connect_names_the_missing_cluster(kube_cluster):
    op = check({**kube_cluster.kwargs, "cluster_name": "gone-cluster"})
    with pytest.raises(
        AirflowFailException, match=r"^The cluster gone-cluster \(tutorial 2\.1\) no longer exists"
    ):
        op.execute({})


def test_a_check_that_cannot_connect_names_the_missing_gateway_and_pool(kube_cluster, namespace):
    op = check(kube_cluster.kwargs, namespace=namespace, gateway_name="inference-gateway", pool_name="pool")
    with pytest.raises(
        AirflowFailException, match=rf"The Gateway {namespace}/inference-gateway \(tutorial 3\.4\)"
    ):
        op.execute({})
    op = check(kube_cluster.kwargs, namespace=namespace, pool_name="vllm-llama3-8b-instruct")
    with pytest.raises(
        AirflowFailException, match=r"The InferencePool .* \(tutorial 3\.3\) no longer exists"
    ):
        op.execute({})


def test_a_check_whose_dependencies_all_exist_is_retried(kube_cluster):
    with pytest.raises(GatewayNotReadyError):
        check(kube_cluster.kwargs).execute({})
