"""rebuild and teardown remove only what this DAG owns, and teardown can run any number of times.

The runs here are in-process `dag.test()` runs against the shared sandbox (cheaper than the real
stack; the scheduler plays no part in what a mode does). One environment goes through rebuild,
teardown and teardown again: it uses a pre-existing VPC and node subnet (existing-network mode)
next to an unrelated cluster, neither of which the DAG owns.

Each run is a module fixture that asks for the run before it (teardown needs the rebuild's
workloads, the second teardown the first), and records the state it left right after it ran; so
any test can run alone or in any order and still sees its own run's outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import time

import pytest
from google.cloud import compute_v1, container_v1

from gke_inference.gke_version import serves_inference_pool_crd
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.operators.workloads import DeleteManifestsOperator
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from sandbox.gcp.state import Project, project_number_for
from sandbox.testing import GoogleClients, enable_gke_apis, unique_name, wait_until
from scripts.demo import run_report
from tests.dags.scheduled_run import scheduled_runs
from tests.resilience.stack.conftest import environment_names

pytestmark = pytest.mark.dag

REGION = "us-central1"
OLD_GKE_VERSION = "1.33.5-gke.1080000"


@pytest.fixture(scope="module")
def google(sandbox) -> GoogleClients:
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


def create_network(google: GoogleClients, name: str, description: str = "") -> None:
    network = compute_v1.Network(name=name, auto_create_subnetworks=False, description=description)
    operation = google.networks.insert(project=google.project, network_resource=network)
    google.global_operations.wait(project=google.project, operation=operation.name)


def create_subnetwork(
    google: GoogleClients, network: str, name: str, description: str = "", **fields
) -> None:
    subnetwork = compute_v1.Subnetwork(
        name=name,
        network=f"projects/{google.project}/global/networks/{network}",
        description=description,
        **fields,
    )
    operation = google.subnetworks.insert(
        project=google.project, region=REGION, subnetwork_resource=subnetwork
    )
    google.region_operations.wait(project=google.project, region=REGION, operation=operation.name)


def node_subnet_fields() -> dict:
    return {
        "ip_cidr_range": "10.0.0.0/20",
        "secondary_ip_ranges": [
            compute_v1.SubnetworkSecondaryRange(range_name="pods-range", ip_cidr_range="10.4.0.0/14"),
            compute_v1.SubnetworkSecondaryRange(range_name="services-range", ip_cidr_range="10.8.0.0/20"),
        ],
    }


def cluster_path(google: GoogleClients, name: str) -> str:
    return f"projects/{google.project}/locations/{REGION}/clusters/{name}"


def create_running_cluster(google: GoogleClients, name: str, network: str, subnet: str, labels: dict) -> None:
    cluster = {
        "name": name,
        "autopilot": {"enabled": True},
        "network": network,
        "subnetwork": subnet,
        "ip_allocation_policy": {
            "use_ip_aliases": True,
            "cluster_secondary_range_name": "pods-range",
            "services_secondary_range_name": "services-range",
        },
        "release_channel": {"channel": container_v1.ReleaseChannel.Channel.RAPID},
        "resource_labels": labels,
    }
    parent = f"projects/{google.project}/locations/{REGION}"
    google.clusters.create_cluster(request={"parent": parent, "cluster": cluster})
    running = container_v1.Cluster.Status.RUNNING
    wait_until(lambda: google.clusters.get_cluster(name=cluster_path(google, name)).status == running, 30)


def cluster_exists(google: GoogleClients, name: str) -> bool:
    parent = f"projects/{google.project}/locations/{REGION}"
    return name in {c.name for c in google.clusters.list_clusters(parent=parent).clusters}


def subnetwork_names(google: GoogleClients) -> set[str]:
    return {s.name for s in google.subnetworks.list(project=google.project, region=REGION)}


def network_names(google: GoogleClients) -> set[str]:
    return {n.name for n in google.networks.list(project=google.project)}


def gcp_deletes(sandbox, since: int) -> list[str]:
    return [e["path"] for e in sandbox.requests()[since:] if e["method"] == "DELETE" and e["api"] != "kube"]


def run(dag, conf: dict):
    dag_run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    return states


@pytest.fixture(scope="module")
def existing_network(google) -> dict:
    """A VPC and node subnet made by someone else, the DAG's own cluster and proxy-only subnet from an
    earlier build, and an unrelated cluster on the same VPC."""
    conf = {**environment_names("f2-modes"), "use_existing_network": True}
    create_network(google, conf["network_name"])
    create_subnetwork(google, conf["network_name"], conf["subnet_name"], **node_subnet_fields())
    create_subnetwork(
        google,
        conf["network_name"],
        conf["proxy_subnet_name"],
        NETWORK_DESCRIPTION,
        ip_cidr_range="10.129.0.0/23",
        purpose="REGIONAL_MANAGED_PROXY",
        role="ACTIVE",
    )
    network_path = f"projects/{google.project}/global/networks/{conf['network_name']}"
    subnet_path = f"projects/{google.project}/regions/{REGION}/subnetworks/{conf['subnet_name']}"
    create_running_cluster(google, conf["cluster_name"], network_path, subnet_path, GCP_LABELS)
    unrelated = unique_name("f2-unrelated")
    create_running_cluster(google, unrelated, network_path, subnet_path, {"team": "someone-else"})
    return {"conf": conf, "unrelated_cluster": unrelated}


def assert_foreign_resources_survive(google, existing_network) -> None:
    conf = existing_network["conf"]
    assert conf["network_name"] in network_names(google)
    assert conf["subnet_name"] in subnetwork_names(google)
    assert cluster_exists(google, existing_network["unrelated_cluster"])


def environment_state(google, conf: dict) -> dict:
    return {
        "cluster": cluster_exists(google, conf["cluster_name"]),
        "proxy_subnet": conf["proxy_subnet_name"] in subnetwork_names(google),
    }


@contextlib.contextmanager
def new_clusters_run_gke(sandbox, version: str) -> Generator[None]:
    """While inside, GKE gives new clusters this version (the twin's default for the release channel)."""
    original = sandbox.sandbox.gke_version
    sandbox.run(setattr, sandbox.sandbox, "gke_version", version)
    try:
        yield
    finally:
        sandbox.run(setattr, sandbox.sandbox, "gke_version", original)


@pytest.fixture(scope="module")
def rebuilt(dag, sandbox, google, existing_network) -> dict:
    """A scheduled run, with no mode in its conf, on the environment an earlier build left; new
    clusters get a GKE version below 1.34.0-gke.1626000 meanwhile, so the rebuilt cluster needs the
    full CRD set (tutorial 2.2). Its run, task states, requests, and what it left."""
    conf = existing_network["conf"]
    assert "mode" not in conf
    before = len(sandbox.requests())
    with new_clusters_run_gke(sandbox, OLD_GKE_VERSION), scheduled_runs():
        dag_run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    return {
        "dag_run": dag_run,
        "states": states,
        "requests": sandbox.requests()[before:],
        "after": environment_state(google, conf),
    }


@pytest.fixture(scope="module")
def torn_down(dag, sandbox, google, existing_network, rebuilt) -> dict:
    """A teardown of the rebuilt environment (workloads and all)."""
    conf = existing_network["conf"]
    before = len(sandbox.requests())
    states = run(dag, {**conf, "mode": "teardown"})
    return {
        "states": states,
        "requests": sandbox.requests()[before:],
        "after": environment_state(google, conf),
    }


@pytest.fixture(scope="module")
def torn_down_again(dag, sandbox, existing_network, torn_down) -> dict:
    before = len(sandbox.requests())
    run(dag, {**existing_network["conf"], "mode": "teardown"})
    return {"requests": sandbox.requests()[before:]}


def delete_paths(requests: list[dict], *, gcp_only: bool = False) -> list[str]:
    return [e["path"] for e in requests if e["method"] == "DELETE" and not (gcp_only and e["api"] == "kube")]


def test_rebuild_deletes_what_the_dag_owns_then_builds_it_again(google, existing_network, rebuilt):
    conf = existing_network["conf"]
    requests = [f"{e['method']} {e['path']}" for e in rebuilt["requests"]]
    cluster_name, proxy = conf["cluster_name"], conf["proxy_subnet_name"]
    delete_cluster = requests.index(f"DELETE /v1/{cluster_path(google, cluster_name)}")
    create_cluster = requests.index(f"POST /v1/projects/{google.project}/locations/{REGION}/clusters")
    assert delete_cluster < create_cluster
    proxy_path = f"/compute/v1/projects/{google.project}/regions/{REGION}/subnetworks"
    assert requests.index(f"DELETE {proxy_path}/{proxy}") < requests.index(f"POST {proxy_path}")
    assert sorted(delete_paths(rebuilt["requests"], gcp_only=True)) == sorted(
        [f"/v1/{cluster_path(google, cluster_name)}", f"{proxy_path}/{proxy}"]
    )
    assert rebuilt["after"] == {"cluster": True, "proxy_subnet": True}
    assert_foreign_resources_survive(google, existing_network)


def test_a_scheduled_run_rebuilds(rebuilt):
    dag_run = rebuilt["dag_run"]
    assert dag_run.run_type == "scheduled"
    # "@weekly" is a CronTriggerTimetable in Airflow 3 ([scheduler] create_cron_data_intervals is off):
    # its data interval is the trigger time itself, Sunday 00:00 UTC.
    interval = (dag_run.data_interval_start, dag_run.data_interval_end)
    assert interval == (dag_run.logical_date, dag_run.logical_date)
    assert (interval[0].weekday(), interval[0].time()) == (6, time(0, 0))
    assert run_report(dag_run)["mode"] == "rebuild"
    assert rebuilt["states"]["teardown.delete_cluster"] == "success"


def test_a_cluster_below_the_boundary_gets_the_full_crd_set(rebuilt):
    assert not serves_inference_pool_crd(OLD_GKE_VERSION)
    assert rebuilt["states"]["cluster.install_crds_full_set"] == "success"
    assert rebuilt["states"]["cluster.install_crds_objective_only"] == "skipped"
    pool_crd = "CustomResourceDefinition/inferencepools.inference.networking.k8s.io"
    assert pool_crd in run_report(rebuilt["dag_run"])["created"], "the DAG installed it itself"


def test_teardown_deletes_only_what_carries_the_dags_mark(google, existing_network, torn_down):
    assert torn_down["after"] == {"cluster": False, "proxy_subnet": False}
    assert_foreign_resources_survive(google, existing_network)
    deletes = delete_paths(torn_down["requests"])
    assert any("/gateways/" in path for path in deletes), "the workloads went first"
    built = [
        task
        for task, state in torn_down["states"].items()
        if state == "success" and task.startswith(("project_", "cluster."))
    ]
    assert built == [], "teardown builds nothing"


def test_a_second_teardown_succeeds_and_deletes_nothing(google, existing_network, torn_down_again):
    assert delete_paths(torn_down_again["requests"]) == []
    assert_foreign_resources_survive(google, existing_network)


def test_teardown_of_a_half_built_environment(dag, sandbox, google, existing_network):
    """The VPC and node subnet exist (a build that stopped before its cluster): both go. The cluster
    name the run is given belongs to someone else's cluster, which stays."""
    unrelated = existing_network["unrelated_cluster"]
    conf = {**environment_names("f2-half"), "cluster_name": unrelated}
    create_network(google, conf["network_name"], NETWORK_DESCRIPTION)
    create_subnetwork(
        google, conf["network_name"], conf["subnet_name"], NETWORK_DESCRIPTION, **node_subnet_fields()
    )
    before = len(sandbox.requests())

    run(dag, {**conf, "mode": "teardown"})

    assert conf["subnet_name"] not in subnetwork_names(google)
    assert conf["network_name"] not in network_names(google)
    assert cluster_exists(google, unrelated)
    assert [path.rsplit("/", 1)[-1] for path in gcp_deletes(sandbox, before)] == [
        conf["subnet_name"],
        conf["network_name"],
    ]


def test_teardown_in_a_project_whose_apis_were_never_enabled(sandbox, monkeypatch):
    """Nothing can exist behind a disabled API: every teardown step reports "absent" and succeeds."""
    project_id = unique_name("f2-fresh")
    sandbox.run(
        sandbox.sandbox.gcp.projects.__setitem__,
        project_id,
        Project(project_id, project_number_for(project_id)),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", sandbox.info["airflow_connections"]["google_cloud_default"]
    )
    location = {"project_id": project_id, "location": REGION, "cluster_name": "inference-gateway-lab"}
    before = len(sandbox.requests())
    params = {"params": dag_params()}

    workloads = DeleteManifestsOperator(
        task_id="delete_workloads", namespace="default", values=params["params"], **location
    ).execute(params)
    outcomes = [
        DeleteClusterOperator(task_id="delete_cluster", **location).execute(params),
        DeleteSubnetworkOperator(
            task_id="delete_subnet", project_id=project_id, region=REGION, subnetwork_name="inference-subnet"
        ).execute(params),
        DeleteNetworkOperator(
            task_id="delete_network", project_id=project_id, network_name="inference-vpc"
        ).execute(params),
    ]

    assert "absent" in workloads
    assert {outcome["reason"] for outcome in outcomes} == {"absent"}
    assert [e for e in sandbox.requests()[before:] if e["method"] != "GET" and e["api"] != "oauth"] == []


def dag_params() -> dict:
    from gke_inference.params import build_params

    return {name: param.value for name, param in build_params().items()}
