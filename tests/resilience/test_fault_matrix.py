"""Fault matrix: every kind of external call the DAG makes, crossed with the transient faults.

Each cell runs the real operator, sensor or hook against the shared sandbox with one fault
injected (it fires once), under Airflow-like retries (``run_like_airflow``), and asserts that the
task ended in success, that the fault did fire, how many tries it took, and that the sandbox holds
exactly one of the resource afterwards. HTTP faults are absorbed by the hooks' own retry policy
within one try; a long-running operation that ends in error costs one task retry; the gateway
checks leave retries to Airflow. The matrix is printed at the end of the run (see conftest.py).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, GKEClusterHook
from gke_inference.hooks.kubernetes import KubernetesApplyHook
from gke_inference.operators.checks import ChatCompletionCheckOperator
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.ownership import GCP_LABELS, K8S_LABELS, NETWORK_DESCRIPTION
from gke_inference.sensors.cluster import ClusterRunningSensor
from sandbox.gcp.state import Project, project_number_for
from tests.resilience.conftest import connection_env, new_namespace

REPO = Path(__file__).resolve().parents[2]
REGION = "us-central1"
NETWORK = "inference-vpc"
SUBNET = "inference-subnet"
CLUSTER = "inference-gateway-lab"
SERVICES = ("compute.googleapis.com", "container.googleapis.com")
NODE_SUBNET = SubnetworkSpec(
    SUBNET, REGION, "10.0.0.0/20", {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"}
)
CLUSTER_SPEC = AutopilotClusterSpec(
    CLUSTER, NETWORK, SUBNET, "pods-range", "services-range", "RAPID", dict(GCP_LABELS)
)
RUNNING_TIMEOUT = 20.0
# Must exceed the connection's request_timeout from the short_timeout_connection fixture (1 s).
CLIENT_TIMEOUT = 1.0
SLOW_RESPONSE_DELAY = CLIENT_TIMEOUT + 1.0
SETTLE = 0.3
SLOW = "slower than client timeout"
LRO_ERROR = "LRO error"
MATRIX_COLUMNS = ("429 + Retry-After", "503", "dropped connection", SLOW, LRO_ERROR)
NO_LRO = "no long-running operation behind this call"
# (row, column) -> why that cell does not exist; read by conftest.py for the printed matrix.
NOT_APPLICABLE: dict[tuple[str, str], str] = {}


@dataclass
class World:
    """What one cell works in: a fresh project (and, for Kubernetes cells, a fresh namespace)."""

    sandbox: Any
    project: str
    cluster: Any = None  # ClusterRef for Kubernetes cells
    namespace: str | None = None
    gateway_address: str | None = None

    @property
    def state(self):
        return self.sandbox.sandbox.gcp

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.sandbox.run(fn, *args)


@dataclass(frozen=True)
class Row:
    """One kind of external call: where its requests go, how the DAG makes it, what must exist after."""

    name: str
    api: str
    method: str
    path: Callable[[World], str]
    act: Callable[[World], Any]
    count_resources: Callable[[World], int] | None = None
    setup: Callable[[World], None] = lambda world: None
    lro_error: Callable[[World], dict] | None = None
    lro_tries: int = 2
    # Set where the operation's error is terminal (Compute's QUOTA_EXCEEDED): what the failure says.
    lro_failure: str | None = None
    http_tries: int = 1  # tries when an HTTP fault hits: 1 where the hook retries itself
    honours_retry_after: bool = True
    not_applicable: tuple[tuple[str, str], ...] = ((LRO_ERROR, NO_LRO),)  # (column, why)
    kube: bool = False


@dataclass(frozen=True)
class Cell:
    row: Row
    column: str

    def __str__(self) -> str:
        return f"{self.row.name}|{self.column}"

    @property
    def expected_outcome(self) -> str:
        """What the printed matrix shows when the cell passes."""
        return "fails fast" if self.column == LRO_ERROR and self.row.lro_failure else "ok"


# --- the calls


def enable_apis(world: World) -> Any:
    return EnableApisOperator(task_id="enable_apis", project_id=world.project, services=SERVICES).execute({})


def enabled_services(world: World) -> int:
    project = world.state.projects[world.project]
    return int(all(service in project.enabled_services for service in SERVICES))


def ensure_network(world: World) -> Any:
    return EnsureNetworkOperator(
        task_id="create_network", project_id=world.project, network_name=NETWORK
    ).execute({})


def networks(world: World) -> int:
    return sum(1 for project, _ in world.state.networks if project == world.project)


def create_network(world: World) -> None:
    ComputeNetworkHook().ensure_network(NETWORK, world.project, description=NETWORK_DESCRIPTION)


def ensure_subnet(world: World) -> Any:
    return EnsureSubnetworkOperator(
        task_id="create_subnet",
        project_id=world.project,
        subnetwork_name=SUBNET,
        network_name=NETWORK,
        region=REGION,
        ip_cidr_range=NODE_SUBNET.ip_cidr_range,
        secondary_ranges=NODE_SUBNET.secondary_ranges,
    ).execute({})


def subnets(world: World) -> int:
    return sum(1 for key in world.state.subnetworks if key[0] == world.project)


def create_subnet(world: World) -> None:
    create_network(world)
    network = ComputeNetworkHook()
    network.ensure_subnetwork(NODE_SUBNET, NETWORK, world.project, description=NETWORK_DESCRIPTION)


def ensure_cluster(world: World) -> Any:
    """The create task, then the wait for RUNNING (the sensor's trigger run to its event)."""
    created = EnsureAutopilotClusterOperator(
        task_id="create_cluster",
        project_id=world.project,
        cluster_name=CLUSTER,
        location=REGION,
        network_name=NETWORK,
        subnetwork_name=SUBNET,
        pods_range_name="pods-range",
        services_range_name="services-range",
    ).execute({})
    wait_until_running(world)
    return created


def wait_until_running(world: World) -> None:
    hook = GKEClusterHook(location=REGION)
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while (cluster := hook.find_cluster(CLUSTER, world.project)) is not None:
        if cluster.status.name == "RUNNING":
            return
        assert time.monotonic() < deadline, f"cluster still {cluster.status.name}"
        time.sleep(0.1)


def clusters(world: World) -> int:
    return sum(1 for key in world.state.clusters if key[0] == world.project)


def create_cluster(world: World) -> None:
    create_subnet(world)
    GKEClusterHook(location=REGION).create_cluster(CLUSTER_SPEC.to_cluster(), world.project)
    wait_until_running(world)


def cluster_sensor(world: World) -> Any:
    sensor = ClusterRunningSensor(
        task_id="wait_for_cluster", project_id=world.project, cluster_name=CLUSTER, location=REGION
    )
    result = sensor.execute({})
    assert result is not None and result["status"] == "RUNNING"
    return result


CONFIG_MAP = "fault-matrix"


def config_map(world: World) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": world.namespace, "labels": K8S_LABELS},
        "data": {"cell": world.project},
    }


def kube_hook(world: World) -> KubernetesApplyHook:
    return KubernetesApplyHook(**world.cluster.kwargs)


def kube_apply(world: World) -> Any:
    return kube_hook(world).apply([config_map(world)])


def kube_read(world: World) -> Any:
    hook = kube_hook(world)
    found = hook.get("v1", "ConfigMap", CONFIG_MAP, world.namespace)
    listed = hook.list(
        "v1",
        "ConfigMap",
        world.namespace,
        {"app.kubernetes.io/managed-by": K8S_LABELS["app.kubernetes.io/managed-by"]},
    )
    assert found is not None and [item["metadata"]["name"] for item in listed] == [CONFIG_MAP]
    return found


def config_maps(world: World) -> int:
    store = world.sandbox.sandbox.clusters[cluster_key(world.cluster)].store
    found = world.call(store.list, "v1", "ConfigMap", world.namespace)
    return sum(1 for item in found if item["metadata"]["name"] == CONFIG_MAP)


def apply_config_map(world: World) -> None:
    kube_hook(world).apply([config_map(world)])


def chat_check(world: World) -> Any:
    return ChatCompletionCheckOperator(
        task_id="check_chat_completion",
        gateway_address=world.gateway_address,
        model="meta-llama/Llama-3.1-8B-Instruct",
        prompt="hi",
        max_tokens=8,
        request_timeout=CLIENT_TIMEOUT,
    ).execute({})


def cluster_key(cluster) -> str:
    return f"projects/{cluster.project_id}/locations/{cluster.location}/clusters/{cluster.cluster_name}"


def operation_error(api: str, operation: str, resource: str) -> Callable[[World], dict]:
    return lambda world: {
        "behaviour": "operation_error",
        "api": api,
        "operation": operation,
        "resource": resource,
        "project": world.project,
        "count": 1,
    }


ROWS = (
    Row(
        "API enable",
        "serviceusage",
        "POST",
        lambda w: rf"/projects/{w.project}/services:batchEnable$",
        enable_apis,
        enabled_services,
        lro_error=operation_error("serviceusage", "batchEnable", SERVICES[0]),
        not_applicable=(),
    ),
    Row(
        "API state read",
        "serviceusage",
        "GET",
        lambda w: rf"/projects/{w.project}/services/",
        enable_apis,
        enabled_services,
    ),
    Row(
        "operation polling (Service Usage)",
        "serviceusage",
        "GET",
        lambda w: rf"/operations/acat\.p2-{project_number_for(w.project)}-",
        enable_apis,
        enabled_services,
    ),
    Row(
        "network insert",
        "compute",
        "POST",
        lambda w: rf"/projects/{w.project}/global/networks$",
        ensure_network,
        networks,
        lro_error=operation_error("compute", "insert", NETWORK),
        lro_failure=r"Creating the VPC \(tutorial 1\.3\) failed: .*QUOTA_EXCEEDED",
        not_applicable=(),
    ),
    Row(
        "network get",
        "compute",
        "GET",
        lambda w: rf"/projects/{w.project}/global/networks/{NETWORK}$",
        ensure_network,
        networks,
    ),
    Row(
        "operation polling (Compute wait)",
        "compute",
        "POST",
        lambda w: rf"/projects/{w.project}/global/operations/[^/]+/wait$",
        ensure_network,
        networks,
        not_applicable=(
            (
                SLOW,
                "Compute's operations.wait is held by the server for up to 2 min, so its client "
                "timeout is request_timeout + 2 min: too slow to test here",
            ),
            (LRO_ERROR, NO_LRO),
        ),
    ),
    Row(
        "subnetwork insert",
        "compute",
        "POST",
        lambda w: rf"/projects/{w.project}/regions/{REGION}/subnetworks$",
        ensure_subnet,
        subnets,
        setup=create_network,
        lro_error=operation_error("compute", "insert", SUBNET),
        lro_failure=r"Creating the subnetwork \(tutorial 1\.3\) failed: .*QUOTA_EXCEEDED",
        not_applicable=(),
    ),
    Row(
        "subnetwork get",
        "compute",
        "GET",
        lambda w: rf"/projects/{w.project}/regions/{REGION}/subnetworks/{SUBNET}$",
        ensure_subnet,
        subnets,
        setup=create_subnet,
    ),
    Row(
        "cluster create",
        "container",
        "POST",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/clusters$",
        ensure_cluster,
        clusters,
        setup=create_subnet,
        not_applicable=(
            (
                LRO_ERROR,
                "the create operation fails after the create task has ended; the wait task then fails "
                "at once naming the failure (see test_terminal_faults)",
            ),
        ),
    ),
    Row(
        "operation polling (GKE)",
        "container",
        "GET",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/operations/",
        ensure_cluster,
        clusters,
        setup=create_subnet,
    ),
    Row(
        "cluster get",
        "container",
        "GET",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/clusters/{CLUSTER}$",
        cluster_sensor,
        clusters,
        setup=create_cluster,
    ),
    Row(
        "token refresh",
        "oauth",
        "POST",
        lambda w: r"^/token$",
        kube_read,
        config_maps,
        setup=apply_config_map,
        kube=True,
        # google-auth retries its token endpoint itself, with its own ~1 s jittered backoff, and
        # does not read Retry-After; our retry only sees what is left after its attempts.
        honours_retry_after=False,
    ),
    Row(
        "Kubernetes apply",
        "kube",
        "PATCH",
        lambda w: rf"/namespaces/{w.namespace}/configmaps/{CONFIG_MAP}$",
        kube_apply,
        config_maps,
        kube=True,
    ),
    Row(
        "Kubernetes get/list",
        "kube",
        "GET",
        lambda w: rf"/namespaces/{w.namespace}/configmaps",
        kube_read,
        config_maps,
        setup=apply_config_map,
        kube=True,
    ),
    Row(
        "gateway HTTP check",
        "gateway",
        "POST",
        lambda w: r"/v1/chat/completions$",
        chat_check,
        http_tries=2,
        kube=True,
    ),
)


def _cells() -> list[Cell]:
    cells = []
    for row in ROWS:
        skipped = dict(row.not_applicable)
        NOT_APPLICABLE.update({(row.name, column): why for column, why in skipped.items()})
        cells.extend(Cell(row, column) for column in MATRIX_COLUMNS if column not in skipped)
    return cells


RETRY_AFTER = 1


def http_fault(column: str) -> dict:
    return {
        "429 + Retry-After": {"status": 429, "retry_after": RETRY_AFTER},
        "503": {"status": 503},
        "dropped connection": {"drop": True},
        SLOW: {"delay": SLOW_RESPONSE_DELAY},
    }[column]


def _new_project(sandbox, services: tuple[str, ...]) -> str:
    project_id = f"fm-{uuid.uuid4().hex[:10]}"

    def add() -> None:
        project = Project(project_id, project_number_for(project_id))
        for service in services:
            project.enable(service)
        sandbox.sandbox.gcp.projects[project_id] = project

    sandbox.run(add)
    return project_id


@pytest.fixture
def world(request, sandbox, short_timeout_connection, clean_faults) -> World:
    assert short_timeout_connection == CLIENT_TIMEOUT
    cell: Cell = request.param
    if cell.row.kube:
        cluster, address = request.getfixturevalue("serving_cluster")
        world = World(sandbox, cluster.project_id, cluster, new_namespace(cluster), address)
    else:
        services = () if cell.row.api == "serviceusage" else SERVICES
        world = World(sandbox, _new_project(sandbox, services))
    cell.row.setup(world)
    return world


def _fault_rule(cell: Cell, world: World) -> dict:
    if cell.column == LRO_ERROR:
        return cell.row.lro_error(world)
    return {
        "api": cell.row.api,
        "method": cell.row.method,
        "path": cell.row.path(world),
        "count": 1,
        **http_fault(cell.column),
    }


def _rule_still_pending(sandbox, rule_id: int) -> bool:
    return any(rule["id"] == rule_id for rule in sandbox.run(sandbox.sandbox.faults.rules))


@pytest.mark.parametrize(
    ("cell", "world"), [pytest.param(c, c, id=str(c)) for c in _cells()], indirect=["world"]
)
def test_transient_fault_is_survived_with_one_resource(cell: Cell, world: World, sandbox, run_like_airflow):
    rule_id = sandbox.faults_add(**_fault_rule(cell, world))
    delayed_request_done = time.monotonic() + SLOW_RESPONSE_DELAY + SETTLE

    if cell.column == LRO_ERROR and cell.row.lro_failure:
        # A failure no retry can change: the first try fails the task, and nothing half-made remains.
        with pytest.raises(AirflowFailException, match=cell.row.lro_failure):
            run_like_airflow(lambda: cell.row.act(world))
        assert cell.row.count_resources(world) == 0
        return
    tries = run_like_airflow(lambda: cell.row.act(world))

    assert not _rule_still_pending(sandbox, rule_id), "the fault never fired: the cell tested nothing"
    expected_tries = cell.row.lro_tries if cell.column == LRO_ERROR else cell.row.http_tries
    assert tries.count == expected_tries, [repr(e) for e in tries.errors]
    if cell.column == SLOW:
        # The abandoned request still reaches its handler after the delay: count what it did too.
        time.sleep(max(0.0, delayed_request_done - time.monotonic()))
    if cell.row.count_resources is not None:
        assert cell.row.count_resources(world) == 1
    if cell.column == "429 + Retry-After" and cell.row.http_tries == 1 and cell.row.honours_retry_after:
        assert _wait_after_429(sandbox, cell, world) >= RETRY_AFTER - 0.05, "Retry-After was not honoured"


def _wait_after_429(sandbox, cell: Cell, world: World) -> float:
    """Seconds between the injected 429 and the next request to the same place."""
    pattern = re.compile(cell.row.path(world))
    times = [
        (entry["ts"], entry["status"])
        for entry in sandbox.requests(cell.row.api)
        if entry["method"] == cell.row.method and pattern.search(entry["path"])
    ]
    throttled = next(index for index, (_, status) in enumerate(times) if status == 429)
    return times[throttled + 1][0] - times[throttled][0]


# --- the whole DAG with several transient faults at once


@pytest.fixture(scope="module")
def dag(sandbox):
    """The DAG, parsed with the sandbox's connections and a 1 s retry delay."""
    from airflow.dag_processing.dagbag import DagBag

    patch = connection_env(sandbox)
    patch.setenv("GKE_INFERENCE_RETRY_DELAY_SECONDS", "1")
    try:
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        yield bag.dags["gke_inference_gateway"]
    finally:
        patch.undo()


def _dag_faults(project: str) -> dict[str, list[dict]]:
    """Faults spread over the DAG's tasks: task id -> the faults aimed at it."""
    gcp = f"/projects/{project}"
    return {
        "project_network.enable_apis": [
            {"behaviour": "operation_error", "api": "serviceusage", "project": project, "count": 1}
        ],
        "project_network.ensure_network": [
            {
                "api": "compute",
                "method": "POST",
                "path": rf"{gcp}/global/networks$",
                "status": 503,
                "count": 1,
            }
        ],
        "project_network.ensure_node_subnet": [
            {
                "api": "compute",
                "method": "POST",
                "path": rf"{gcp}/regions/.*/subnetworks$",
                "drop": True,
                "count": 1,
            }
        ],
        "cluster.ensure_cluster": [
            {
                "api": "container",
                "method": "POST",
                "path": rf"{gcp}/locations/.*/clusters$",
                "status": 429,
                "retry_after": 1,
                "count": 1,
            }
        ],
        "cluster.wait_cluster_running": [
            {
                "api": "container",
                "method": "GET",
                "path": rf"{gcp}/.*/clusters/{CLUSTER}$",
                "status": 503,
                "count": 2,
            }
        ],
        "model_server.deploy_vllm": [
            {
                "api": "kube",
                "method": "PATCH",
                "path": r"/deployments/vllm-llama3-1-8b-instruct$",
                "status": 503,
                "count": 1,
            },
            {"api": "oauth", "method": "POST", "path": r"^/token$", "drop": True, "count": 1},
        ],
        "verify.check_chat_completion": [
            {"api": "gateway", "method": "POST", "path": r"/v1/chat/completions$", "status": 503, "count": 1}
        ],
    }


# Faults the hooks absorb within one try; the others cost the task one Airflow retry.
TASKS_RETRIED_BY_AIRFLOW = {"project_network.enable_apis", "verify.check_chat_completion"}


@pytest.mark.dag
def test_whole_dag_survives_transient_faults_with_retries_only_where_they_hit(dag, sandbox, clean_faults):
    project = _new_project(sandbox, ())
    faults = _dag_faults(project)
    rule_ids = [sandbox.faults_add(**rule) for rules in faults.values() for rule in rules]

    dag_run = dag.test(run_conf={"project_id": project, "gateway_port": 8080})

    instances = dag_run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    assert dag_run.state == "success", states
    pending = [rule_id for rule_id in rule_ids if _rule_still_pending(sandbox, rule_id)]
    assert pending == [], "every fault fired"
    retried = {ti.task_id for ti in instances if ti.try_number > 1}
    assert retried == TASKS_RETRIED_BY_AIRFLOW
    state = sandbox.sandbox.gcp
    assert [key for key in state.networks if key[0] == project] == [(project, NETWORK)]
    assert sorted(key[2] for key in state.subnetworks if key[0] == project) == [
        "inference-subnet",
        "proxy-only-subnet",
    ]
    assert [key for key in state.clusters if key[0] == project] == [(project, REGION, CLUSTER)]
    store = sandbox.sandbox.clusters[f"projects/{project}/locations/{REGION}/clusters/{CLUSTER}"].store
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("inference.networking.k8s.io/v1", "InferencePool"),
    ):
        names = [item["metadata"]["name"] for item in sandbox.run(store.list, api_version, kind, "default")]
        assert len(names) == len(set(names)) and names, (kind, names)
