"""Terminal faults fail fast and say why: one table, one assertion shape.

Each case drives the real operator or sensor (its trigger run to the first event, as the
triggerer would) into a failure no retry can fix, and asserts that the task ends on its first try
with AirflowFailException (or, for a wait that cannot know it is permanent, AirflowSensorTimeout,
which Airflow does not retry either), that the message names the cause and the tutorial step, that
the failing request was not retried by the hook, and that it happened quickly.

Cases already covered elsewhere with the same assertions are not repeated: the Compute API
disabled (tests/plugins/test_operators_gcp.py), a missing hf-token Secret and unschedulable pods
(tests/plugins/test_kube_triggers.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.operators.checks import ModelRoutingCheckOperator
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.project_network import EnableApisOperator
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.ownership import NETWORK_DESCRIPTION
from gke_inference.params import build_params
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.sensors.kubernetes import GatewayAddressSensor, PodsReadySensor
from sandbox.gcp.state import Project, project_number_for
from sandbox.testing import wait_until
from tests.resilience.conftest import new_namespace

DEFAULTS = {name: param.value for name, param in build_params().items()}
REGION = "us-central1"
FAIL_FAST_SECONDS = 20.0
EVENT_TIMEOUT = 30.0
# The wrong-model check asks again for this long before failing (60 s in production).
ROUTE_WINDOW = 1.0
GATEWAY_WAIT = 1.0


@dataclass
class Case:
    name: str
    run: Callable[[Any], Any]  # (Setting) -> the task's result; must raise
    failure: type[BaseException]
    message: str  # regex the failure message must match (cause and tutorial step)
    faulted_request: tuple[str, str, str] | None = None  # (api, method, path regex): sent once, not retried
    services: tuple[str, ...] = ("compute.googleapis.com", "container.googleapis.com")  # of the project
    on_serving_cluster: bool = False  # needs the shared cluster that serves the model

    def __str__(self) -> str:
        return self.name


@dataclass
class Setting:
    """What a case runs in: the sandbox handle, a fresh project, the shared serving cluster."""

    sandbox: Any
    project: str
    serving: Any = None

    def add_fault(self, **rule: Any) -> None:
        self.sandbox.faults_add(**rule)


def new_project(sandbox, services: tuple[str, ...]) -> str:
    project_id = f"tf-{uuid.uuid4().hex[:10]}"

    def add() -> None:
        project = Project(project_id, project_number_for(project_id))
        for service in services:
            project.enable(service)
        sandbox.sandbox.gcp.projects[project_id] = project

    sandbox.run(add)
    return project_id


def complete(task, context: dict) -> Any:
    """Run a task as Airflow does: execute, and if it defers, its trigger's first event."""
    try:
        return task.execute(context)
    except TaskDeferred as deferred:
        trigger, method_name = deferred.trigger, deferred.method_name

        async def first_event() -> dict:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("trigger ended without an event")

        event = asyncio.run(asyncio.wait_for(first_event(), EVENT_TIMEOUT))
        return getattr(task, method_name)(context, event)


def values_for(namespace: str) -> dict:
    """What a manifest operator renders with: the plan's params in that namespace."""
    return {**DEFAULTS, "namespace": namespace}


# --- the cases


def enable_apis_denied(setting: Setting) -> Any:
    setting.add_fault(api="serviceusage", method="POST", path=rf"/projects/{setting.project}/", status=403)
    return EnableApisOperator(task_id="enable_apis", project_id=setting.project).execute({})


def create_cluster_operator(setting: Setting) -> EnsureAutopilotClusterOperator:
    return EnsureAutopilotClusterOperator(
        task_id="create_cluster",
        project_id=setting.project,
        cluster_name="inference-gateway-lab",
        location=REGION,
        network_name="inference-vpc",
        subnetwork_name="inference-subnet",
        pods_range_name="pods-range",
        services_range_name="services-range",
    )


def with_network(setting: Setting) -> None:
    hook = ComputeNetworkHook()
    hook.ensure_network("inference-vpc", setting.project, description=NETWORK_DESCRIPTION)
    subnet = SubnetworkSpec(
        "inference-subnet",
        REGION,
        "10.0.0.0/20",
        {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"},
    )
    hook.ensure_subnetwork(subnet, "inference-vpc", setting.project, description=NETWORK_DESCRIPTION)


def create_cluster_denied(setting: Setting) -> Any:
    with_network(setting)
    setting.add_fault(
        api="container", method="POST", path=rf"/projects/{setting.project}/.*/clusters$", status=403
    )
    return create_cluster_operator(setting).execute({})


def create_cluster_api_disabled(setting: Setting) -> Any:
    return create_cluster_operator(setting).execute({})


def wait_for_cluster(setting: Setting) -> Any:
    sensor = ClusterRunningSensor(
        task_id="wait_for_cluster",
        project_id=setting.project,
        cluster_name="inference-gateway-lab",
        location=REGION,
        poll_interval=0.2,
    )
    return complete(sensor, {})


def cluster_goes_to_error(setting: Setting) -> Any:
    with_network(setting)
    setting.add_fault(behaviour="cluster_error", project=setting.project)
    create_cluster_operator(setting).execute({})
    return wait_for_cluster(setting)


def cluster_create_operation_fails(setting: Setting) -> Any:
    with_network(setting)
    setting.add_fault(behaviour="operation_error", api="container", project=setting.project)
    create_cluster_operator(setting).execute({})
    return wait_for_cluster(setting)


def model_pods_without_hf_token(setting: Setting) -> Any:
    cluster, _ = setting.serving
    namespace = new_namespace(cluster)
    context = {}
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
    ApplyManifestsOperator(
        task_id="deploy_model",
        manifest="vllm-llama3-1-8b-instruct.yaml",
        values=values_for(namespace),
        **cluster.kwargs,
    ).execute(context)
    sensor = PodsReadySensor(
        task_id="wait_for_model_pods",
        label_selector={"app": DEFAULTS["model_app_label"]},
        wait_timeout=60,
        namespace=namespace,
        poll_interval=0.2,
        **cluster.kwargs,
    )
    return complete(sensor, context)


def gateway_without_proxy_only_subnet(setting: Setting) -> Any:
    from tests.plugins.conftest import build_cluster

    cluster = build_cluster(setting.sandbox, proxy_only_subnet=False)
    namespace = new_namespace(cluster)
    ApplyManifestsOperator(
        task_id="deploy_gateway", manifest="gateway.yaml", values=values_for(namespace), **cluster.kwargs
    ).execute({})
    sensor = GatewayAddressSensor(
        task_id="wait_for_gateway",
        gateway_name=DEFAULTS["gateway_name"],
        wait_timeout=GATEWAY_WAIT,
        namespace=namespace,
        poll_interval=0.2,
        **cluster.kwargs,
    )
    return complete(sensor, {})


def wrong_model_accepted(setting: Setting) -> Any:
    _, address = setting.serving
    return ModelRoutingCheckOperator(
        task_id="check_wrong_model_rejected",
        gateway_address=address,
        model=DEFAULTS["wrong_model_name"],
        expect="rejected",
        prompt="hi",
        max_tokens=8,
        route_propagation_window=ROUTE_WINDOW,
    ).execute({})


CASES = (
    Case(
        "permission denied enabling the APIs",
        enable_apis_denied,
        AirflowFailException,
        r"^Enabling the Google APIs \(tutorial 1\.2\) failed: HTTP 403",
        ("serviceusage", "POST", r":batchEnable$"),
    ),
    Case(
        "permission denied creating the cluster",
        create_cluster_denied,
        AirflowFailException,
        r"^Creating the Autopilot cluster \(tutorial 2\.1\) failed: HTTP 403",
        ("container", "POST", r"/clusters$"),
    ),
    Case(
        "Kubernetes Engine API disabled",
        create_cluster_api_disabled,
        AirflowFailException,
        r"^Creating the Autopilot cluster \(tutorial 2\.1\) failed: container\.googleapis\.com is disabled",
        ("container", "GET", r"/clusters/inference-gateway-lab$"),
        services=(),
    ),
    Case(
        "cluster goes to ERROR",
        cluster_goes_to_error,
        AirflowFailException,
        r"^Waiting for the cluster \(tutorial 2\.1\) failed: cluster 'inference-gateway-lab' is ERROR: "
        r"Cluster creation failed",
    ),
    Case(
        "cluster create operation fails",
        cluster_create_operation_fails,
        AirflowFailException,
        r"^Waiting for the cluster \(tutorial 2\.1\) failed: .*does not exist.*creation failed",
    ),
    Case(
        "model pods crash-loop without the HF token",
        model_pods_without_hf_token,
        AirflowFailException,
        r"CrashLoopBackOff.*Hugging Face token.*tutorial 3\.2.*\(tutorial 4\.1\)$",
        on_serving_cluster=True,
    ),
    Case(
        "gateway never programmed: no proxy-only subnet",
        gateway_without_proxy_only_subnet,
        AirflowSensorTimeout,
        r"not programmed.*proxy-only subnet in the region \(tutorial 1\.3\) \(tutorial 4\.1\)$",
    ),
    Case(
        "wrong model accepted: no body-based routing",
        wrong_model_accepted,
        AirflowFailException,
        r"body-based routing is not in effect.*tutorial 5\.1.*still so after 1 s",
        on_serving_cluster=True,
    ),
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_terminal_fault_fails_at_once_naming_cause_and_step(
    case: Case, request, sandbox, short_timeout_connection, clean_faults, run_like_airflow
):
    setting = Setting(sandbox, new_project(sandbox, case.services))
    if case.on_serving_cluster:
        setting.serving = request.getfixturevalue("serving_cluster")
    since = time.time()
    started = time.monotonic()

    with pytest.raises(case.failure, match=case.message):
        run_like_airflow(lambda: case.run(setting))

    assert time.monotonic() - started < FAIL_FAST_SECONDS
    if case.faulted_request:
        api, method, path = case.faulted_request
        sent = [
            entry
            for entry in sandbox.requests(api)
            if entry["ts"] >= since
            and entry["method"] == method
            and setting.project in entry["path"]
            and re.search(path, entry["path"])
        ]
        assert len(sent) == 1, f"the failing request was retried: {sent}"


def test_wrong_model_check_waits_out_the_route_propagation(
    sandbox, serving_cluster, short_timeout_connection
):
    """Body-based routing applied while the check is asking: it ends in success, not a failure."""
    from tests.plugins.test_checks import serve

    cluster, _ = serving_cluster
    namespace = new_namespace(cluster)
    address = serve(cluster, namespace, body_routing=False)
    check = ModelRoutingCheckOperator(
        task_id="check_wrong_model_rejected",
        gateway_address=address,
        model=DEFAULTS["wrong_model_name"],
        expect="rejected",
        prompt="hi",
        max_tokens=8,
        route_propagation_window=30.0,
    )
    apply_body_routing = ApplyManifestsOperator(
        task_id="apply_body_routing",
        manifest=["body-based-router", "body-routing.yaml"],
        values=values_for(namespace),
        **cluster.kwargs,
    )

    def model_server_refusals() -> list[dict]:
        """vLLM's own 404s for the wrong model since the check started: the request reached a pod."""
        return [e for e in sandbox.requests("model") if e["ts"] >= since and e["status"] == 404]

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        since = time.time()
        started = time.monotonic()
        result = pool.submit(check.execute, {})
        # Not a fixed sleep: the routing is applied once the check has seen a request reach vLLM.
        wait_until(model_server_refusals, timeout=EVENT_TIMEOUT)
        apply_body_routing.execute({})
        outcome = result.result(timeout=60)

    assert outcome["status"] == 404 and outcome["pod"] is None  # the gateway's 404, not vLLM's
    asked = [e for e in sandbox.requests("gateway") if e["ts"] >= since]
    assert len(asked) > len(model_server_refusals()) >= 1, "the check did not ask again after vLLM's 404"
    assert time.monotonic() - started < 30.0


@pytest.mark.parametrize("bad", ["soon", "0", "-5"])
def test_a_bad_request_timeout_in_the_connection_fails_at_once_naming_it(sandbox, monkeypatch, bad):
    connection = json.loads(sandbox.info["airflow_connections"]["google_cloud_default"])
    connection["extra"] = {**connection["extra"], "request_timeout": bad}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(connection))
    operator = EnableApisOperator(task_id="enable_apis", project_id=new_project(sandbox, ()))

    with pytest.raises(
        AirflowFailException, match=rf"tutorial 1\.2.*request_timeout must be a positive.*{bad!r}"
    ):
        operator.execute({})
