"""Fault matrix: every kind of external call the DAG makes, crossed with the transient faults.

Each cell runs the real operator, sensor, hook or trigger against the shared sandbox with one fault
injected (it fires once), as the one task of a DAG run by ``dag.test()`` with Airflow's own retries
(``run_in_airflow``), and asserts that the task succeeded, that the fault fired, the task
instance's try count, and what the twin's request log and state show afterwards: create requests
that succeeded (exactly one per resource), deletes done, the gateway still serving. In the "slower
than client timeout" column the twin holds the answer well past the client's timeout and records
whether the client had closed the connection by then: the cell proves the client gave up. HTTP
faults are absorbed by the hooks' own retry policy within one try; a long-running operation that
ends in error costs one task retry; the gateway check leaves retries to Airflow. The matrix is
printed at the end of the run (see conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, GKEClusterHook
from gke_inference.hooks.kubernetes import ClusterKubernetesHook
from gke_inference.operators.checks import ChatCompletionCheckOperator
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.ownership import GCP_LABELS, K8S_LABELS, NETWORK_DESCRIPTION
from gke_inference.params import build_params
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.triggers.kubernetes import GatewayAddressTrigger, PodsReadyTrigger
from sandbox.gcp.state import Project, project_number_for
from sandbox.testing import wait_until
from scripts.demo import run_report
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
# The connection's request_timeout from the short_timeout_connection fixture.
CLIENT_TIMEOUT = 1.0
# The twin holds a slow answer this long past the client's timeout before it looks whether the
# client is still there: a client that waits longer than its timeout (or has none) is seen waiting.
TIMEOUT_MARGIN = 1.5
# The chat check's own timeout (its operator argument): above CLIENT_TIMEOUT so that a loaded
# machine's slow but healthy answer does not cost the gateway row a third try.
CHAT_TIMEOUT = 2.0
DEFAULTS = {name: param.value for name, param in build_params().items()}
SLOW = "slower than client timeout"
LRO_ERROR = "LRO error"
MATRIX_COLUMNS = ("429 + Retry-After", "503", "dropped connection", SLOW, LRO_ERROR)
NO_LRO = "no long-running operation behind this call"
DELETE_LRO = "an operation that ends in error on delete is not in this matrix"
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
    serving_namespace: str | None = None  # where the model, its Gateway, pool and route live

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
    # The requests that create the call's resource: api, method, path pattern, success status.
    creates: Callable[[World], tuple[str, str, str, int]] | None = None
    # What must hold afterwards (the resource gone after a delete, the gateway still serving, ...).
    check_after: Callable[[World], None] = lambda world: None
    setup: Callable[[World], None] = lambda world: None
    lro_error: Callable[[World], dict] | None = None
    lro_tries: int = 2
    # Set where the operation's error is terminal (Compute's QUOTA_EXCEEDED): what the failure says.
    lro_failure: str | None = None
    http_tries: int = 1  # tries when an HTTP fault hits: 1 where the hook retries itself
    client_timeout: float = CLIENT_TIMEOUT  # what bounds one request of this call
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


def services_enabled(world: World) -> None:
    # Enabling twice is harmless (no duplicate can exist), so the state is what counts here.
    project = world.state.projects[world.project]
    assert all(service in project.enabled_services for service in SERVICES)


def ensure_network(world: World) -> Any:
    return EnsureNetworkOperator(
        task_id="create_network", project_id=world.project, network_name=NETWORK
    ).execute({})


def network_inserts(world: World) -> tuple[str, str, str, int]:
    return "compute", "POST", rf"/projects/{world.project}/global/networks$", 200


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


def subnet_inserts(world: World) -> tuple[str, str, str, int]:
    return "compute", "POST", rf"/projects/{world.project}/regions/{REGION}/subnetworks$", 200


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


def cluster_creates(world: World) -> tuple[str, str, str, int]:
    return "container", "POST", rf"/projects/{world.project}/locations/{REGION}/clusters$", 200


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


def delete_cluster(world: World) -> Any:
    return DeleteClusterOperator(
        task_id="delete_cluster",
        project_id=world.project,
        cluster_name=CLUSTER,
        location=REGION,
        delete_timeout=RUNNING_TIMEOUT,
    ).execute({})


def cluster_gone(world: World) -> None:
    assert [key for key in world.state.clusters if key[0] == world.project] == []


def delete_subnet(world: World) -> Any:
    return DeleteSubnetworkOperator(
        task_id="delete_subnet", project_id=world.project, subnetwork_name=SUBNET, region=REGION
    ).execute({})


def subnet_gone(world: World) -> None:
    assert [key for key in world.state.subnetworks if key[0] == world.project] == []


def delete_network(world: World) -> Any:
    return DeleteNetworkOperator(
        task_id="delete_network", project_id=world.project, network_name=NETWORK
    ).execute({})


def network_gone(world: World) -> None:
    assert [key for key in world.state.networks if key[0] == world.project] == []


CONFIG_MAP = "fault-matrix"


def config_map(world: World) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": world.namespace, "labels": K8S_LABELS},
        "data": {"cell": world.project},
    }


def kube_hook(world: World) -> ClusterKubernetesHook:
    return ClusterKubernetesHook(**world.cluster.kwargs)


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


def config_map_applies(world: World) -> tuple[str, str, str, int]:
    # A server-side apply that created the object answers 201 Created.
    return "kube", "PATCH", rf"/namespaces/{world.namespace}/configmaps/{CONFIG_MAP}$", 201


def apply_config_map(world: World) -> None:
    kube_hook(world).apply([config_map(world)])


def kube_delete(world: World) -> Any:
    results = kube_hook(world).delete([config_map(world)])
    assert [result.action for result in results] == ["deleted"], results
    return results


def config_map_gone(world: World) -> None:
    assert kube_hook(world).get("v1", "ConfigMap", CONFIG_MAP, world.namespace) is None


SERVED_CRD = "inferencepools.inference.networking.k8s.io"


def crds_established(world: World) -> None:
    kube_hook(world).wait_for_crds_established([SERVED_CRD], timeout=RUNNING_TIMEOUT)


def trigger_kwargs(world: World) -> dict:
    now = time.time()
    return {
        **world.cluster.kwargs,
        "namespace": world.serving_namespace,
        "started_at": now,
        "deadline": now + RUNNING_TIMEOUT,
        "poll_interval": 0.2,
    }


def first_event(trigger) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), RUNNING_TIMEOUT + 10))


def pods_poll(world: World) -> Any:
    selector = f"app={DEFAULTS['model_app_label']}"
    event = first_event(PodsReadyTrigger(label_selector=selector, replicas=1, **trigger_kwargs(world)))
    assert event["status"] == "success", event
    return event


def gateway_poll(world: World) -> Any:
    trigger = GatewayAddressTrigger(gateway_name=DEFAULTS["gateway_name"], **trigger_kwargs(world))
    event = first_event(trigger)
    assert event["status"] == "success" and event["result"] == world.gateway_address, event
    return event


def chat_check(world: World) -> Any:
    return ChatCompletionCheckOperator(
        task_id="check_chat_completion",
        gateway_address=world.gateway_address,
        model="meta-llama/Llama-3.1-8B-Instruct",
        prompt="hi",
        max_tokens=8,
        request_timeout=CHAT_TIMEOUT,
    ).execute({})


def gateway_still_serves(world: World) -> None:
    """The Gateway, its pool and route are intact and a fresh request is answered on the first try."""
    hook = kube_hook(world)
    namespace = world.serving_namespace
    gateway = hook.get("gateway.networking.k8s.io/v1", "Gateway", DEFAULTS["gateway_name"], namespace)
    programmed = [c for c in gateway["status"]["conditions"] if c["type"] == "Programmed"]
    assert (
        programmed[0]["status"] == "True"
        and gateway["status"]["addresses"][0]["value"] == world.gateway_address
    )
    assert hook.get("inference.networking.k8s.io/v1", "InferencePool", DEFAULTS["pool_name"], namespace)
    assert hook.list("gateway.networking.k8s.io/v1", "HTTPRoute", namespace)
    chat_check(world)


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
        check_after=services_enabled,
        lro_error=operation_error("serviceusage", "batchEnable", SERVICES[0]),
        not_applicable=(),
    ),
    Row(
        "API state read",
        "serviceusage",
        "GET",
        lambda w: rf"/projects/{w.project}/services/",
        enable_apis,
        check_after=services_enabled,
    ),
    Row(
        "operation polling (Service Usage)",
        "serviceusage",
        "GET",
        lambda w: rf"/operations/acat\.p2-{project_number_for(w.project)}-",
        enable_apis,
        check_after=services_enabled,
    ),
    Row(
        "network insert",
        "compute",
        "POST",
        lambda w: rf"/projects/{w.project}/global/networks$",
        ensure_network,
        network_inserts,
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
        network_inserts,
    ),
    Row(
        "operation polling (Compute wait)",
        "compute",
        "POST",
        lambda w: rf"/projects/{w.project}/global/operations/[^/]+/wait$",
        ensure_network,
        network_inserts,
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
        subnet_inserts,
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
        subnet_inserts,
        setup=create_subnet,
    ),
    Row(
        "cluster create",
        "container",
        "POST",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/clusters$",
        ensure_cluster,
        cluster_creates,
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
        cluster_creates,
        setup=create_subnet,
    ),
    Row(
        "cluster get",
        "container",
        "GET",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/clusters/{CLUSTER}$",
        cluster_sensor,
        cluster_creates,
        setup=create_cluster,
    ),
    Row(
        "cluster delete",
        "container",
        "DELETE",
        lambda w: rf"/projects/{w.project}/locations/{REGION}/clusters/{CLUSTER}$",
        delete_cluster,
        check_after=cluster_gone,
        setup=create_cluster,
        not_applicable=((LRO_ERROR, DELETE_LRO),),
    ),
    Row(
        "subnetwork delete",
        "compute",
        "DELETE",
        lambda w: rf"/projects/{w.project}/regions/{REGION}/subnetworks/{SUBNET}$",
        delete_subnet,
        check_after=subnet_gone,
        setup=create_subnet,
        not_applicable=((LRO_ERROR, DELETE_LRO),),
    ),
    Row(
        "network delete",
        "compute",
        "DELETE",
        lambda w: rf"/projects/{w.project}/global/networks/{NETWORK}$",
        delete_network,
        check_after=network_gone,
        setup=create_network,
        not_applicable=((LRO_ERROR, DELETE_LRO),),
    ),
    Row(
        "token refresh",
        "oauth",
        "POST",
        lambda w: r"^/token$",
        kube_read,
        config_map_applies,
        setup=apply_config_map,
        kube=True,
        # google-auth retries its token endpoint itself, with its own ~1 s jittered backoff, and
        # does not read Retry-After; our retry only sees what is left after its attempts.
        honours_retry_after=False,
    ),
    Row(
        "Kubernetes discovery",
        "kube",
        "GET",
        lambda w: r"^/apis$",
        kube_read,
        config_map_applies,
        setup=apply_config_map,
        kube=True,
    ),
    Row(
        "Kubernetes apply",
        "kube",
        "PATCH",
        lambda w: rf"/namespaces/{w.namespace}/configmaps/{CONFIG_MAP}$",
        kube_apply,
        config_map_applies,
        kube=True,
    ),
    Row(
        "Kubernetes get/list",
        "kube",
        "GET",
        lambda w: rf"/namespaces/{w.namespace}/configmaps(/{CONFIG_MAP})?$",
        kube_read,
        config_map_applies,
        setup=apply_config_map,
        kube=True,
    ),
    Row(
        "Kubernetes delete",
        "kube",
        "DELETE",
        lambda w: rf"/namespaces/{w.namespace}/configmaps/{CONFIG_MAP}$",
        kube_delete,
        check_after=config_map_gone,
        setup=apply_config_map,
        kube=True,
    ),
    Row(
        "CRD established wait",
        "kube",
        "GET",
        lambda w: rf"/customresourcedefinitions/{re.escape(SERVED_CRD)}$",
        crds_established,
        kube=True,
    ),
    Row(
        "trigger: pods poll",
        "kube",
        "GET",
        lambda w: rf"/namespaces/{w.serving_namespace}/pods$",
        pods_poll,
        kube=True,
    ),
    Row(
        "trigger: Gateway poll",
        "kube",
        "GET",
        lambda w: rf"/namespaces/{w.serving_namespace}/gateways/{DEFAULTS['gateway_name']}$",
        gateway_poll,
        kube=True,
    ),
    Row(
        "gateway HTTP check",
        "gateway",
        "POST",
        lambda w: r"/v1/chat/completions$",
        chat_check,
        check_after=gateway_still_serves,
        http_tries=2,
        client_timeout=CHAT_TIMEOUT,
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


def http_fault(column: str, row: Row) -> dict:
    return {
        "429 + Retry-After": {"status": 429, "retry_after": RETRY_AFTER},
        "503": {"status": 503},
        "dropped connection": {"drop": True},
        SLOW: {"delay": row.client_timeout + TIMEOUT_MARGIN},
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


@dataclass
class CellRun:
    """One cell as its task ran: its world, when its fault went in, and the task's tries."""

    world: World
    mark: float
    rule_id: int
    tries: Any


_runs: dict[str, dict[str, CellRun]] = {}


def _run_row(row: Row, request, sandbox, run_in_airflow) -> dict[str, CellRun]:
    """All the row's cells as the tasks of one DAG run (a DAG run costs seconds: one per row)."""
    kube = request.getfixturevalue("serving_cluster") if row.kube else None
    serving = request.getfixturevalue("serving_namespace") if row.kube else None
    columns = [cell.column for cell in _cells() if cell.row is row]
    made: dict[str, tuple[World, float, int]] = {}

    def attempt(column: str) -> Callable[[], Any]:
        def first_try_sets_up_then_acts() -> Any:
            if column not in made:
                mark = time.time()  # before the setup: what it creates counts too
                world = _new_world(row, sandbox, kube, serving)
                made[column] = world, mark, sandbox.faults_add(**_fault_rule(Cell(row, column), world))
            return row.act(made[column][0])

        return first_try_sets_up_then_acts

    task_ids = {column: f"cell_{index}" for index, column in enumerate(columns)}
    tries = run_in_airflow({task_ids[column]: attempt(column) for column in columns})
    return {column: CellRun(*made[column], tries[task_ids[column]]) for column in columns if column in made}


def _new_world(row: Row, sandbox, kube, serving_namespace) -> World:
    if row.kube:
        cluster, address = kube
        world = World(
            sandbox, cluster.project_id, cluster, new_namespace(cluster), address, serving_namespace
        )
    else:
        services = () if row.api == "serviceusage" else SERVICES
        world = World(sandbox, _new_project(sandbox, services))
    row.setup(world)
    return world


@pytest.fixture
def cell_run(request, sandbox, short_timeout_connection, clean_faults, run_in_airflow) -> CellRun:
    assert short_timeout_connection == CLIENT_TIMEOUT
    cell: Cell = request.param
    if cell.row.name not in _runs:
        _runs[cell.row.name] = _run_row(cell.row, request, sandbox, run_in_airflow)
    assert cell.column in _runs[cell.row.name], "the cell's setup failed in every try"
    return _runs[cell.row.name][cell.column]


def _fault_rule(cell: Cell, world: World) -> dict:
    if cell.column == LRO_ERROR:
        return cell.row.lro_error(world)
    return {
        "api": cell.row.api,
        "method": cell.row.method,
        "path": cell.row.path(world),
        "count": 1,
        **http_fault(cell.column, cell.row),
    }


def _rule_still_pending(sandbox, rule_id: int) -> bool:
    return any(rule["id"] == rule_id for rule in sandbox.run(sandbox.sandbox.faults.rules))


def _requests_since(sandbox, mark: float, api: str, method: str, path: str) -> list[dict]:
    pattern = re.compile(path)
    return [
        entry
        for entry in sandbox.requests(api)
        if entry["ts"] >= mark and entry["method"] == method and pattern.search(entry["path"])
    ]


def _successful_creates(sandbox, mark: float, world: World, row: Row) -> int:
    """Create requests that succeeded; Compute answers a repeated ``requestId`` with the first
    call's operation (and creates nothing), so those count once."""
    api, method, path, created_status = row.creates(world)
    found = _requests_since(sandbox, mark, api, method, path)
    return len({_request_id(entry) for entry in found if entry["status"] == created_status})


def _request_id(entry: dict) -> str:
    found = re.search(r"(?:^|&)requestId=([^&]+)", entry["query"])
    return found.group(1) if found else str(entry["ts"])


def _slowed_request(sandbox, mark: float, cell: Cell, world: World) -> dict:
    """The request the fault held (logged once the twin answered it, after the delay)."""

    def held() -> list[dict]:
        found = _requests_since(sandbox, mark, cell.row.api, cell.row.method, cell.row.path(world))
        return [entry for entry in found if entry.get("delayed")]

    return wait_until(held, timeout=cell.row.client_timeout + TIMEOUT_MARGIN + 10)[0]


@pytest.mark.parametrize(
    ("cell", "cell_run"), [pytest.param(c, c, id=str(c)) for c in _cells()], indirect=["cell_run"]
)
def test_transient_fault_is_survived_with_one_resource(cell: Cell, cell_run: CellRun, sandbox):
    world, mark, tries = cell_run.world, cell_run.mark, cell_run.tries

    if cell.column == LRO_ERROR and cell.row.lro_failure:
        # A failure no retry can change: the first try fails the task, and nothing half-made remains.
        assert (tries.state, tries.count) == ("failed", 1), [repr(e) for e in tries.errors]
        assert isinstance(tries.errors[0], AirflowFailException)
        assert re.search(cell.row.lro_failure, str(tries.errors[0])), str(tries.errors[0])
        assert _resources_left(world, cell.row) == 0
        return
    assert tries.state == "success", [repr(e) for e in tries.errors]
    assert not _rule_still_pending(sandbox, cell_run.rule_id), (
        "the fault never fired: the cell tested nothing"
    )
    expected_tries = cell.row.lro_tries if cell.column == LRO_ERROR else cell.row.http_tries
    assert tries.count == expected_tries, [repr(e) for e in tries.errors]
    if cell.column == SLOW:
        held = _slowed_request(sandbox, mark, cell, world)
        waited = cell.row.client_timeout + TIMEOUT_MARGIN
        assert held["client_gone"], f"the client still waited after {waited} s: its timeout was not applied"
    if cell.row.creates is not None:
        assert _successful_creates(sandbox, mark, world, cell.row) == 1, "created more than once"
    cell.row.check_after(world)
    if cell.column == "429 + Retry-After" and cell.row.http_tries == 1 and cell.row.honours_retry_after:
        assert _wait_after_429(sandbox, cell, world) >= RETRY_AFTER - 0.05, "Retry-After was not honoured"


def _resources_left(world: World, row: Row) -> int:
    """Networks or subnetworks of the cell's project (the rows whose create can fail for good)."""
    kind = "subnetworks" if "subnetworks" in row.creates(world)[2] else "networks"
    return sum(1 for key in getattr(world.state, kind) if key[0] == world.project)


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
    mark = time.time()
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
    # the run report (and the run's note) names them, with the try that succeeded
    assert run_report(dag_run)["retried"] == {task_id: 2 for task_id in sorted(TASKS_RETRIED_BY_AIRFLOW)}
    created = Counter(_created_resources(sandbox.requests(), mark, project))
    # Inserts carry the name in their body, which the log does not keep: count per collection.
    assert (created["compute networks"], created["compute subnetworks"], created["container clusters"]) == (
        1,
        2,  # the node subnet and the proxy-only subnet
        1,
    ), created
    for name in (
        "kube deployments/vllm-llama3-1-8b-instruct",
        "kube gateways/inference-gateway",
        "kube inferencepools/vllm-llama-pool",
    ):
        assert created[name] == 1, (name, created)
    assert all(count == 1 for name, count in created.items() if name.startswith("kube ")), created


def _created_resources(entries: list[dict], mark: float, project: str) -> list[str]:
    """One "<api> <collection>[/<name>]" per create request that succeeded since ``mark``: a GCP
    insert the twin accepted (200 with an operation), or a server-side apply that answered 201."""
    created, request_ids = [], set()
    for entry in entries:
        if entry["ts"] < mark:
            continue
        if entry["api"] in ("compute", "container") and entry["method"] == "POST" and entry["status"] == 200:
            insert = re.search(rf"/projects/{project}/.*/(networks|subnetworks|clusters)$", entry["path"])
            if insert and _request_id(entry) not in request_ids:  # a repeated requestId creates nothing
                request_ids.add(_request_id(entry))
                created.append(f"{entry['api']} {insert.group(1)}")
        elif entry["api"] == "kube" and entry["method"] == "PATCH" and entry["status"] == 201:
            collection, name = entry["path"].rstrip("/").split("/")[-2:]
            created.append(f"kube {collection}/{name}")
    return created
