"""Pods-Ready and Gateway-address triggers and sensors against sandbox clusters (tutorial 4.1)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.params import build_params
from gke_inference.sensors.kubernetes import DEFER_TIMEOUT_MARGIN, GatewayAddressSensor, PodsReadySensor
from gke_inference.triggers.kubernetes import (
    HUGGING_FACE_HINT,
    KV_CACHE_HINT,
    GatewayAddressTrigger,
    PodsReadyTrigger,
    assess_gateway,
    assess_pods,
)

DEFAULTS = {name: param.value for name, param in build_params().items()}
MODEL_SELECTOR = f"app={DEFAULTS['model_app_label']}"
EVENT_TIMEOUT = 30.0


def values_for(**params):
    return {**DEFAULTS, **params}


def trigger_kwargs(cluster, namespace, wait=15.0, **extra):
    now = time.time()
    return {
        **cluster.kwargs,
        "namespace": namespace,
        "started_at": now,
        "deadline": now + wait,
        "poll_interval": 0.1,
        "log_interval": 1.0,
        **extra,
    }


async def first_event(trigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(first(), EVENT_TIMEOUT)


def deploy_model(cluster, namespace, *, secret: str = "from-connection", **params):
    """ComputeClass + hf-token Secret + vLLM Deployment, as the model_server task group does."""
    values = values_for(namespace=namespace, **params)
    if secret == "from-connection":
        HuggingFaceSecretOperator(task_id="hf", namespace=namespace, **cluster.kwargs).execute({})
    elif secret == "empty":
        cluster.hook().apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "hf-token", "namespace": namespace},
                    "stringData": {"token": ""},
                }
            ]
        )
    manifests = ["vllm-llama3-1-8b-instruct.yaml"]
    if "compute_class_name" not in params:
        manifests.insert(0, "model-inference-class.yaml")
    ApplyManifestsOperator(task_id="deploy", manifest=manifests, values=values, **cluster.kwargs).execute({})


# Serialization


def test_triggers_serialize_to_plain_kwargs_and_back(kube_cluster):
    pods = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, "default"), label_selector=MODEL_SELECTOR, replicas=2
    )
    gateway = GatewayAddressTrigger(
        **trigger_kwargs(kube_cluster, "default"), gateway_name="inference-gateway"
    )
    for trigger in (pods, gateway):
        classpath, kwargs = trigger.serialize()
        module_name, class_name = classpath.rsplit(".", 1)
        assert module_name == "gke_inference.triggers.kubernetes"
        assert all(isinstance(v, str | int | float | bool | type(None)) for v in kwargs.values())
        rebuilt = type(trigger)(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)
        assert type(trigger).__name__ == class_name


# Pods Ready


async def test_pods_ready_succeeds_once_the_model_is_loaded(kube_cluster, namespace):
    deploy_model(kube_cluster, namespace, replicas=2)
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace), label_selector=MODEL_SELECTOR, replicas=2
    )
    event = await first_event(trigger)
    assert event["status"] == "success", event
    assert event["result"]["ready"] == 2
    assert all(name.startswith(DEFAULTS["model_app_label"]) for name in event["result"]["pods"])


async def test_pods_fail_fast_when_the_hf_token_is_empty(kube_cluster, namespace):
    deploy_model(kube_cluster, namespace, secret="empty")
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace, wait=60.0), label_selector=MODEL_SELECTOR, replicas=1
    )
    started = time.monotonic()
    event = await first_event(trigger)
    assert event["status"] == "failed", event
    assert "CrashLoopBackOff" in event["message"]
    assert time.monotonic() - started < 15, "should fail on the crash loop, not wait for the deadline"


async def test_pods_fail_fast_when_max_model_len_does_not_fit_the_gpu(kube_cluster, namespace):
    # The tutorial's manifest forced past plan_run: Llama 3.1 8B with its full context on one L4.
    deploy_model(kube_cluster, namespace, max_model_len=131072)
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace, wait=60.0), label_selector=MODEL_SELECTOR, replicas=1
    )
    started = time.monotonic()
    event = await first_event(trigger)
    assert event["status"] == "failed", event
    assert "CrashLoopBackOff" in event["message"]
    assert "To serve at least one request with the models's max seq len (131072)" in event["message"]
    assert KV_CACHE_HINT in event["message"]
    assert HUGGING_FACE_HINT not in event["message"]
    assert time.monotonic() - started < 15, "should fail on the crash loop, not wait for the deadline"


async def test_pods_fail_fast_when_the_secret_is_missing(kube_cluster, namespace):
    deploy_model(kube_cluster, namespace, secret="none")
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace), label_selector=MODEL_SELECTOR, replicas=1
    )
    event = await first_event(trigger)
    assert event["status"] == "failed", event
    assert "CreateContainerConfigError" in event["message"] and "hf-token" in event["message"]


async def test_unschedulable_pods_fail_after_the_grace_period(kube_cluster, namespace):
    deploy_model(kube_cluster, namespace, compute_class_name="no-such-class")
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace),
        label_selector=MODEL_SELECTOR,
        replicas=1,
        unschedulable_grace=0.5,
    )
    event = await first_event(trigger)
    assert event["status"] == "failed", event
    assert "unschedulable" in event["message"] and "no-such-class" in event["message"]


async def test_pods_never_ready_time_out_with_the_last_state(kube_cluster, namespace, sandbox, clean_faults):
    sandbox.faults_add(behaviour="pods_never_ready", namespace=namespace)
    deploy_model(kube_cluster, namespace)
    trigger = PodsReadyTrigger(
        **trigger_kwargs(kube_cluster, namespace, wait=2.0), label_selector=MODEL_SELECTOR, replicas=1
    )
    event = await first_event(trigger)
    assert event["status"] == "timeout", event
    assert "0/1 Ready" in event["message"]


# Gateway address


async def test_gateway_gets_an_address_with_the_proxy_only_subnet(kube_cluster, namespace):
    ApplyManifestsOperator(
        task_id="gw", manifest="gateway.yaml", values=values_for(namespace=namespace), **kube_cluster.kwargs
    ).execute({})
    trigger = GatewayAddressTrigger(
        **trigger_kwargs(kube_cluster, namespace), gateway_name="inference-gateway"
    )
    event = await first_event(trigger)
    assert event["status"] == "success", event
    assert event["result"].startswith("127.")


async def test_gateway_without_proxy_only_subnet_times_out_naming_it(
    kube_cluster_without_proxy_subnet, namespace_factory
):
    cluster = kube_cluster_without_proxy_subnet
    namespace = namespace_factory(cluster)
    ApplyManifestsOperator(
        task_id="gw", manifest="gateway.yaml", values=values_for(namespace=namespace), **cluster.kwargs
    ).execute({})
    trigger = GatewayAddressTrigger(
        **trigger_kwargs(cluster, namespace, wait=2.0), gateway_name="inference-gateway"
    )
    event = await first_event(trigger)
    assert event["status"] == "timeout", event
    assert "not programmed" in event["message"]
    assert "proxy-only" in event["message"].lower()


async def test_missing_cluster_fails_the_wait(kube_cluster):
    gone = {**kube_cluster.kwargs, "cluster_name": "never-created"}
    now = time.time()
    trigger = GatewayAddressTrigger(
        **gone, namespace="default", started_at=now, deadline=now + 10, poll_interval=0.1, gateway_name="gw"
    )
    event = await first_event(trigger)
    assert event["status"] == "failed" and "404" in event["message"]


# Sensors


def test_sensors_defer_with_the_timeout(kube_cluster):
    sensor = PodsReadySensor(
        task_id="wait_pods",
        label_selector={"app": "x"},
        replicas=2,
        timeout=900,  # the DAG passes plan["pods_timeout"], an int once resolved
        **kube_cluster.kwargs,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.timeout == timedelta(seconds=900 + DEFER_TIMEOUT_MARGIN)
    trigger = deferred.value.trigger
    assert isinstance(trigger, PodsReadyTrigger)
    assert trigger.label_selector == "app=x" and trigger.replicas == 2
    assert trigger.deadline - trigger.started_at == pytest.approx(900)


def test_sensor_turns_events_into_results_and_failures(kube_cluster):
    sensor = GatewayAddressSensor(
        task_id="wait_gateway", gateway_name="inference-gateway", wait_timeout=60, **kube_cluster.kwargs
    )
    assert (
        sensor.execute_complete({}, {"status": "success", "message": "ok", "result": "127.0.0.9"})
        == "127.0.0.9"
    )
    with pytest.raises(AirflowSensorTimeout, match="proxy-only"):
        sensor.execute_complete({}, {"status": "timeout", "message": "not programmed: no proxy-only subnet"})
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):
        sensor.execute_complete({}, {"status": "failed", "message": "pod x: CrashLoopBackOff"})


def test_sensor_refuses_a_bad_timeout(kube_cluster):
    with pytest.raises(TypeError, match="wait_timeout must be a number"):
        GatewayAddressSensor(task_id="w", gateway_name="g", wait_timeout="900", **kube_cluster.kwargs)
    with pytest.raises(TypeError, match="replicas must be an int"):
        PodsReadySensor(
            task_id="w", label_selector={"a": "b"}, replicas="2", timeout=9, **kube_cluster.kwargs
        )
    # A value that only arrives when the task runs (an XComArg) fails the task without retries.
    sensor = GatewayAddressSensor(task_id="w", gateway_name="g", wait_timeout=60, **kube_cluster.kwargs)
    sensor.wait_timeout = "soon"
    with pytest.raises(AirflowFailException, match="wait_timeout must be a number"):
        sensor.execute({})


def test_non_deferrable_sensor_pokes_the_same_check(kube_cluster, namespace):
    ApplyManifestsOperator(
        task_id="gw", manifest="gateway.yaml", values=values_for(namespace=namespace), **kube_cluster.kwargs
    ).execute({})
    sensor = GatewayAddressSensor(
        task_id="wait_gateway",
        gateway_name="inference-gateway",
        namespace=namespace,
        wait_timeout=20,
        poll_interval=0.1,
        deferrable=False,
        **kube_cluster.kwargs,
    )
    deadline = time.monotonic() + 20
    while not (poked := sensor.poke({})).is_done:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert poked.xcom_value.startswith("127.")


# Pure assessments


def pod(name, *, ready=False, waiting=None, scheduled=None, deleting=False):
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": scheduled}
        )
    statuses = [
        {"name": "vllm", "state": {"waiting": waiting} if waiting else {"running": {}}, "restartCount": 3}
    ]
    metadata = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": metadata, "status": {"conditions": conditions, "containerStatuses": statuses}}


def test_assess_pods():
    assert assess_pods([pod("a", ready=True)], 1).done
    assert not assess_pods([pod("a", ready=True, deleting=True)], 1).done
    crash = assess_pods([pod("a", waiting={"reason": "CrashLoopBackOff", "message": "back-off"})], 1)
    assert crash.failure and "3 restarts" in crash.failure
    pulling = assess_pods([pod("a", waiting={"reason": "ContainerCreating"})], 1)
    assert not pulling.failure and not pulling.done
    stuck = assess_pods([pod("a", scheduled="no nodes")], 1)
    assert stuck.unschedulable and not stuck.failure and "no nodes" in stuck.state
    kv_exit = {
        "terminated": {
            "message": "ValueError: The model's max seq len (131072) is larger than the maximum number of "
            "tokens that can be stored in KV cache (29968)."
        }
    }
    kv_crash = pod("a", waiting={"reason": "CrashLoopBackOff"})
    kv_crash["status"]["containerStatuses"][0]["lastState"] = kv_exit
    assert KV_CACHE_HINT in assess_pods([kv_crash], 1).failure
    assert KV_CACHE_HINT not in crash.failure
    # Enough Ready replicas win over one broken pod (e.g. a surge pod of a rollout).
    assert assess_pods([pod("a", ready=True), pod("b", waiting={"reason": "ErrImagePull"})], 1).done


def test_assess_gateway():
    assert assess_gateway(None, "gw").state == "Gateway gw does not exist yet"
    programmed = {
        "status": {
            "addresses": [{"value": "10.0.0.1"}],
            "conditions": [{"type": "Programmed", "status": "True"}],
        }
    }
    assert assess_gateway(programmed, "gw").result == "10.0.0.1"
    address_only = {"status": {"addresses": [{"value": "10.0.0.1"}], "conditions": []}}
    assert not assess_gateway(address_only, "gw").done
    refused = {
        "status": {
            "conditions": [{"type": "Programmed", "status": "False", "reason": "Invalid", "message": "m"}]
        }
    }
    assert "not programmed (Invalid: m)" in assess_gateway(refused, "gw").state
