"""The four waits start in the triggerer (``start_from_trigger``): what the scheduler hands over,
rendered as the triggerer renders it, is the trigger ``execute()`` would defer to.

The triggerer's steps are taken from Airflow 3.3: the DAG is serialized and read back (the
scheduler's ``defer_task`` copies ``start_trigger_args.trigger_kwargs`` to the trigger row), the
trigger is built from those kwargs, given the task (``BaseTrigger.task_instance`` keeps the template
fields that are also trigger kwargs) and rendered with a context whose ``xcom_pull`` answers.
The real scheduler + triggerer run is in tests/resilience/stack/test_wait_starts_in_triggerer.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import DAG, BaseOperator
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from airflow.sdk.module_loading import import_string
from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.sensors.kubernetes import GatewayAddressSensor, PodsReadySensor
from gke_inference.triggers import cluster as cluster_triggers
from gke_inference.triggers.polling import FAILED, Verdict

PLAN = {
    "project_id": "proj-sft",
    "gcp_conn_id": "google_cloud_default",
    "region": "us-central1",
    "cluster_name": "cluster-sft",
    "cluster_timeout": 1800,
    "namespace": "ns-sft",
    "model_app_label": "vllm-llama3-1-8b-instruct",
    "replicas": 2,
    "pods_timeout": 900,
    "gateway_name": "inference-gateway",
    "gateway_timeout": 600,
}
TIME_KEYS = ("started_at", "deadline")


class PlanRun(BaseOperator):
    def execute(self, context):
        return None


class PlanTI:
    """The part of a task instance that templates and XComArgs use: plan_run's XComs."""

    def __init__(self, plan: dict) -> None:
        self.plan = plan

    def xcom_pull(self, task_ids=None, key="return_value", *, map_indexes=None, **_):
        assert task_ids in ("plan_run", ["plan_run"]), task_ids
        return self.plan[key]


class TriggererTI(PlanTI):
    """In the triggerer only a single-XCom pull is answered (GetXCom; a pull without map_indexes
    asks GetXComSequenceSlice, which its supervisor cannot decode, and the trigger hangs)."""

    def xcom_pull(self, task_ids=None, key="return_value", *, map_indexes=None, **_):
        assert map_indexes == -1, "the triggerer answers GetXCom only"
        return super().xcom_pull(task_ids, key)


def cluster_args(plan) -> dict:
    return {
        "project_id": plan["project_id"],
        "gcp_conn_id": plan["gcp_conn_id"],
        "location": plan["region"],
        "cluster_name": plan["cluster_name"],
    }


SENSORS = {
    "wait_cluster_running": lambda plan, **extra: ClusterRunningSensor(
        task_id="wait_cluster_running", **cluster_args(plan), **extra, timeout=plan["cluster_timeout"]
    ),
    "wait_model_pods_ready": lambda plan, **extra: PodsReadySensor(
        task_id="wait_model_pods_ready",
        **cluster_args(plan),
        **extra,
        namespace=plan["namespace"],
        label_selector={"app": plan["model_app_label"]},
        replicas=plan["replicas"],
        timeout=plan["pods_timeout"],
    ),
    "wait_gateway_address": lambda plan, **extra: GatewayAddressSensor(
        task_id="wait_gateway_address",
        **cluster_args(plan),
        **extra,
        namespace=plan["namespace"],
        gateway_name=plan["gateway_name"],
        timeout=plan["gateway_timeout"],
    ),
}


def build_dag(task_id: str, **sensor_kwargs):
    with DAG("sft", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), schedule=None) as dag:
        plan = PlanRun(task_id="plan_run").output
        sensor = SENSORS[task_id](plan, **sensor_kwargs)
    return dag, sensor


def started_in_triggerer(dag, task_id: str, plan: dict):
    """The trigger as the triggerer builds, renders and starts it, from the serialized DAG."""
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task(task_id)
    assert task.start_from_trigger is True
    args = task.start_trigger_args
    kwargs = BaseSerialization.deserialize(args.trigger_kwargs)
    trigger = import_string(args.trigger_cls)(**kwargs)
    trigger.task_instance = SimpleNamespace(task_id=task_id, task=task)
    trigger.render_template_fields(context={"ti": TriggererTI(plan)})
    return task, trigger


def deferred_by_execute(sensor, plan: dict, monkeypatch):
    """The trigger ``execute()`` defers to, after the worker rendered the sensor's fields."""
    sensor.render_template_fields(context={"ti": PlanTI(plan)})
    # The cluster sensor looks once before deferring: it is still provisioning.
    monkeypatch.setattr(cluster_triggers, "assess_cluster", lambda *_: Verdict(state="PROVISIONING"))
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    return deferred.value


def without_times(serialized: tuple) -> tuple:
    classpath, kwargs = serialized
    return classpath, {key: value for key, value in kwargs.items() if key not in TIME_KEYS}


@pytest.mark.parametrize("task_id", sorted(SENSORS))
def test_the_start_trigger_is_the_trigger_execute_defers_to(task_id, gcp_connection, monkeypatch):
    dag, sensor = build_dag(task_id)
    task, trigger = started_in_triggerer(dag, task_id, PLAN)
    assert task.start_trigger_args.next_method == "execute_complete"  # resumed as a deferral is

    trigger.begin(now=1000.0)
    deferred = deferred_by_execute(sensor, PLAN, monkeypatch)
    expected = deferred.trigger

    assert deferred.method_name == task.start_trigger_args.next_method
    assert without_times(trigger.serialize()) == without_times(expected.serialize())
    assert trigger.started_at == 1000.0
    assert trigger.deadline - trigger.started_at == expected.deadline - expected.started_at


def test_rendered_values_keep_their_types():
    plan = PLAN | {"project_id": "", "replicas": 3}  # "": the connection's project, as on a worker
    dag, _ = build_dag("wait_model_pods_ready", impersonation_chain=["a@p.iam.gserviceaccount.com"])
    _, trigger = started_in_triggerer(dag, "wait_model_pods_ready", plan)
    trigger.begin(now=0.0)
    assert trigger.target.project_id is None
    assert trigger.target.impersonation_chain == ["a@p.iam.gserviceaccount.com"]
    assert trigger.replicas == 3 and trigger.label_selector == f"app={PLAN['model_app_label']}"
    assert trigger.deadline == 900.0 and trigger.unschedulable_grace == 900.0


def test_a_wrong_plan_value_fails_the_wait_without_a_poll():
    plan = PLAN | {"replicas": 0}
    dag, sensor = build_dag("wait_model_pods_ready")
    _, trigger = started_in_triggerer(dag, "wait_model_pods_ready", plan)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == FAILED and "replicas must be an int of at least 1, got 0" in event["message"]
    with pytest.raises(AirflowFailException, match="replicas must be"):
        sensor.execute_complete({}, event)


@pytest.mark.parametrize("sensor_class", [PodsReadySensor, GatewayAddressSensor])
def test_a_non_deferrable_sensor_starts_on_a_worker(sensor_class):
    own = {"label_selector": {"app": "x"}} if sensor_class is PodsReadySensor else {"gateway_name": "g"}
    sensor = sensor_class(
        task_id="w", cluster_name="c", location="l", wait_timeout=60, deferrable=False, **own
    )
    assert sensor.start_from_trigger is False and sensor.start_trigger_args is None
    deferrable = sensor_class(task_id="d", cluster_name="c", location="l", wait_timeout=60, **own)
    assert deferrable.start_from_trigger is True
    assert type(deferrable).start_trigger_args is None  # set on the instance, not the class
