"""rebuild and teardown remove only what this DAG owns, and teardown can run any number of times.

The runs here are in-process `dag.test()` runs against the shared sandbox (cheaper than the real
stack; the scheduler plays no part in what a mode does). One environment goes through rebuild,
teardown and teardown again: it uses a pre-existing VPC and node subnet (existing-network mode)
next to an unrelated cluster, neither of which the DAG owns.
"""

from __future__ import annotations

import pytest
from google.cloud import compute_v1, container_v1

from gke_inference.operators.kubernetes import DeleteManifestsOperator
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from sandbox.gcp.state import Project, project_number_for
from sandbox.testing import GoogleClients, enable_gke_apis, unique_name, wait_until
from tests.resilience.stack.conftest import environment_names

pytestmark = pytest.mark.dag

REGION = "us-central1"


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


def deletes(sandbox, since: int) -> list[str]:
    return [f"{e['path']}" for e in sandbox.requests()[since:] if e["method"] == "DELETE"]


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


def test_rebuild_deletes_what_the_dag_owns_then_builds_it_again(dag, sandbox, google, existing_network):
    conf = existing_network["conf"]
    before = len(sandbox.requests())

    run(dag, {**conf, "mode": "rebuild"})

    requests = [f"{e['method']} {e['path']}" for e in sandbox.requests()[before:]]
    cluster_name, proxy = conf["cluster_name"], conf["proxy_subnet_name"]
    delete_cluster = requests.index(f"DELETE /v1/{cluster_path(google, cluster_name)}")
    create_cluster = requests.index(f"POST /v1/projects/{google.project}/locations/{REGION}/clusters")
    assert delete_cluster < create_cluster
    proxy_path = f"/compute/v1/projects/{google.project}/regions/{REGION}/subnetworks"
    assert requests.index(f"DELETE {proxy_path}/{proxy}") < requests.index(f"POST {proxy_path}")
    assert sorted(gcp_deletes(sandbox, before)) == sorted(
        [f"/v1/{cluster_path(google, cluster_name)}", f"{proxy_path}/{proxy}"]
    )
    assert cluster_exists(google, cluster_name) and proxy in subnetwork_names(google)
    assert_foreign_resources_survive(google, existing_network)


def test_teardown_deletes_only_what_carries_the_dags_mark(dag, sandbox, google, existing_network):
    conf = existing_network["conf"]
    before = len(sandbox.requests())

    states = run(dag, {**conf, "mode": "teardown"})

    assert not cluster_exists(google, conf["cluster_name"])
    assert conf["proxy_subnet_name"] not in subnetwork_names(google)
    assert_foreign_resources_survive(google, existing_network)
    assert any("/gateways/" in path for path in deletes(sandbox, before)), "the workloads went first"
    built = [
        task
        for task, state in states.items()
        if state == "success" and task.startswith(("project_", "cluster."))
    ]
    assert built == [], "teardown builds nothing"


def test_a_second_teardown_succeeds_and_deletes_nothing(dag, sandbox, google, existing_network):
    before = len(sandbox.requests())

    run(dag, {**existing_network["conf"], "mode": "teardown"})

    assert deletes(sandbox, before) == []
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

    workloads = DeleteManifestsOperator(task_id="delete_workloads", **location).execute(params)
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
