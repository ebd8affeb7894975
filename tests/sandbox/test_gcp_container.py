"""Container v1 clusters and operations through google-cloud-container (REST transport)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1, container_v1
from kubernetes import client as k8s
from kubernetes import config as kube_config

from sandbox.testing import GoogleClients, enable_gke_apis, running_sandbox, unique_name, wait_until

REGION = "us-central1"
CLUSTER_STATUS = container_v1.Cluster.Status
OPERATION_STATUS = container_v1.Operation.Status


@pytest.fixture(scope="module")
def google(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


@pytest.fixture(scope="module")
def vpc(google) -> dict:
    """The tutorial's VPC and node subnet (with pods-range and services-range) for this module."""
    network, subnet = unique_name("vpc"), unique_name("subnet")
    operation = google.networks.insert(
        project=google.project,
        network_resource=compute_v1.Network(name=network, auto_create_subnetworks=False),
    )
    google.global_operations.wait(project=google.project, operation=operation.name)
    operation = google.subnetworks.insert(
        project=google.project,
        region=REGION,
        subnetwork_resource=compute_v1.Subnetwork(
            name=subnet,
            network=f"projects/{google.project}/global/networks/{network}",
            ip_cidr_range="10.0.0.0/20",
            secondary_ip_ranges=[
                compute_v1.SubnetworkSecondaryRange(range_name="pods-range", ip_cidr_range="10.4.0.0/14"),
                compute_v1.SubnetworkSecondaryRange(range_name="services-range", ip_cidr_range="10.8.0.0/20"),
            ],
        ),
    )
    google.region_operations.wait(project=google.project, region=REGION, operation=operation.name)
    return {"network": network, "subnetwork": subnet}


def autopilot_cluster(name: str, vpc: dict, **overrides) -> dict:
    cluster = {
        "name": name,
        "autopilot": {"enabled": True},
        "network": vpc["network"],
        "subnetwork": vpc["subnetwork"],
        "ip_allocation_policy": {
            "use_ip_aliases": True,
            "cluster_secondary_range_name": "pods-range",
            "services_secondary_range_name": "services-range",
        },
        "release_channel": {"channel": container_v1.ReleaseChannel.Channel.RAPID},
        "resource_labels": {"managed-by": "airflow-gke-inference-gateway"},
    }
    cluster.update(overrides)
    return cluster


def parent(google, location: str = REGION) -> str:
    return f"projects/{google.project}/locations/{location}"


def create(google, cluster: dict, location: str = REGION) -> container_v1.Operation:
    return google.clusters.create_cluster(request={"parent": parent(google, location), "cluster": cluster})


def wait_for_operation(
    google, operation: container_v1.Operation, timeout: float = 20.0
) -> container_v1.Operation:
    name = f"{parent(google, operation.location)}/operations/{operation.name}"

    def finished():
        current = google.clusters.get_operation(request={"name": name})
        return current if current.status == OPERATION_STATUS.DONE else None

    return wait_until(finished, timeout=timeout)


def get_cluster(google, name: str) -> container_v1.Cluster:
    return google.clusters.get_cluster(request={"name": f"{parent(google)}/clusters/{name}"})


def delete_and_wait(google, name: str) -> None:
    operation = google.clusters.delete_cluster(request={"name": f"{parent(google)}/clusters/{name}"})
    wait_for_operation(google, operation)


def test_an_autopilot_cluster_provisions_then_runs_with_a_kubernetes_endpoint(sandbox, google, vpc):
    name = unique_name("lab")
    operation = create(google, autopilot_cluster(name, vpc))
    assert operation.operation_type == container_v1.Operation.Type.CREATE_CLUSTER
    assert get_cluster(google, name).status == CLUSTER_STATUS.PROVISIONING

    finished = wait_for_operation(google, operation)
    assert not finished.error.message
    cluster = get_cluster(google, name)
    assert cluster.status == CLUSTER_STATUS.RUNNING
    assert cluster.autopilot.enabled and cluster.location == REGION
    assert cluster.release_channel.channel == container_v1.ReleaseChannel.Channel.RAPID
    assert cluster.current_master_version == sandbox.sandbox.gke_version
    assert cluster.resource_labels["managed-by"] == "airflow-gke-inference-gateway"
    assert cluster.ip_allocation_policy.cluster_ipv4_cidr_block == "10.4.0.0/14"
    assert cluster.network_config.subnetwork.endswith(f"/subnetworks/{vpc['subnetwork']}")
    assert base64.b64decode(cluster.master_auth.cluster_ca_certificate) == sandbox.sandbox.ca.ca_pem

    key = f"{parent(google)}/clusters/{name}"
    kube = sandbox.sandbox.clusters[key]
    assert cluster.endpoint == kube.endpoint and cluster.endpoint.startswith("127.0.0.1:")
    kubeconfig_file = Path(sandbox.info["kubeconfig_dir"]) / f"{name}.yaml"
    assert (
        json.loads(kubeconfig_file.read_text())["clusters"][0]["cluster"]["server"]
        == f"https://{cluster.endpoint}"
    )
    with kube_config.new_client_from_config(config_file=str(kubeconfig_file)) as api:
        namespaces = {item.metadata.name for item in k8s.CoreV1Api(api).list_namespace().items}
    assert "default" in namespaces

    delete_and_wait(google, name)
    assert key not in sandbox.sandbox.clusters


def test_a_subnetwork_cannot_be_deleted_while_a_cluster_uses_it(google, vpc):
    name = unique_name("user")
    wait_for_operation(google, create(google, autopilot_cluster(name, vpc)))
    try:
        with pytest.raises(exceptions.BadRequest, match=f"being used by GKE cluster '{name}'"):
            google.subnetworks.delete(project=google.project, region=REGION, subnetwork=vpc["subnetwork"])
    finally:
        delete_and_wait(google, name)


def test_deleting_a_cluster_stops_it_then_it_is_gone(sandbox, google, vpc):
    name = unique_name("lab")
    wait_for_operation(google, create(google, autopilot_cluster(name, vpc)))
    operation = google.clusters.delete_cluster(request={"name": f"{parent(google)}/clusters/{name}"})
    assert operation.operation_type == container_v1.Operation.Type.DELETE_CLUSTER
    assert get_cluster(google, name).status == CLUSTER_STATUS.STOPPING
    wait_for_operation(google, operation)
    with pytest.raises(exceptions.NotFound):
        get_cluster(google, name)


def test_the_reported_gke_version_is_settable_per_test(sandbox, google, vpc):
    old_version = "1.33.5-gke.1162000"
    previous = sandbox.sandbox.gke_version
    sandbox.run(setattr, sandbox.sandbox, "gke_version", old_version)
    name = unique_name("old")
    try:
        wait_for_operation(google, create(google, autopilot_cluster(name, vpc)))
    finally:
        sandbox.run(setattr, sandbox.sandbox, "gke_version", previous)
    assert get_cluster(google, name).current_master_version == old_version
    delete_and_wait(google, name)

    pinned = unique_name("pinned")
    wait_for_operation(
        google, create(google, autopilot_cluster(pinned, vpc, initial_cluster_version=old_version))
    )
    assert get_cluster(google, pinned).current_master_version == old_version
    delete_and_wait(google, pinned)

    aliased = unique_name("alias")
    minor = ".".join(previous.split(".")[:2])
    wait_for_operation(google, create(google, autopilot_cluster(aliased, vpc, initial_cluster_version=minor)))
    assert get_cluster(google, aliased).current_master_version == previous
    delete_and_wait(google, aliased)


def test_list_clusters_in_a_location_and_everywhere(google, vpc):
    name = unique_name("listed")
    operation = create(google, autopilot_cluster(name, vpc))
    try:
        for location in (REGION, "-"):
            listed = google.clusters.list_clusters(request={"parent": parent(google, location)})
            assert name in {cluster.name for cluster in listed.clusters}
        elsewhere = google.clusters.list_clusters(request={"parent": parent(google, "europe-west4")})
        assert name not in {cluster.name for cluster in elsewhere.clusters}
    finally:
        wait_for_operation(google, operation)
        delete_and_wait(google, name)


def test_creating_an_existing_cluster_conflicts_and_a_missing_one_is_not_found(google, vpc):
    name = unique_name("twice")
    operation = create(google, autopilot_cluster(name, vpc))
    with pytest.raises(exceptions.Conflict, match="Already exists"):
        create(google, autopilot_cluster(name, vpc))
    wait_for_operation(google, operation)
    delete_and_wait(google, name)
    with pytest.raises(exceptions.NotFound):
        get_cluster(google, name)


def test_a_cluster_cannot_be_deleted_while_it_provisions(google, vpc):
    name = unique_name("busy")
    operation = create(google, autopilot_cluster(name, vpc))
    with pytest.raises(exceptions.BadRequest, match="incompatible operation"):
        google.clusters.delete_cluster(request={"name": f"{parent(google)}/clusters/{name}"})
    wait_for_operation(google, operation)
    delete_and_wait(google, name)


@pytest.mark.parametrize(
    ("overrides", "location", "message"),
    [
        ({"network": "no-such-vpc"}, REGION, 'Network "no-such-vpc" does not exist'),
        ({"subnetwork": "no-such-subnet"}, REGION, "no-such-subnet.* does not exist"),
        (
            {
                "ip_allocation_policy": {
                    "use_ip_aliases": True,
                    "cluster_secondary_range_name": "missing-range",
                }
            },
            REGION,
            'secondary range "missing-range" not found',
        ),
        ({"name": "Bad_Name"}, REGION, "Must be a match of regex"),
        ({"initial_cluster_version": "1.99"}, REGION, 'Version "1.99" is invalid'),
        ({"initial_cluster_version": "newest"}, REGION, 'Version "newest" is invalid'),
        ({}, "us-central1-a", "Autopilot clusters must be regional"),
        ({}, "us-moon1", 'Location "us-moon1" does not exist'),
    ],
)
def test_invalid_clusters_are_bad_requests(google, vpc, overrides, location, message):
    with pytest.raises(exceptions.BadRequest, match=message):
        cluster = autopilot_cluster(unique_name("bad"), vpc)
        cluster.update(overrides)
        create(google, cluster, location=location)


def test_a_cluster_error_ends_the_operation_with_an_error_and_the_cluster_in_error(
    sandbox, clean_faults, google, vpc
):
    name = unique_name("broken")
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "cluster_error", cluster=name)
    finished = wait_for_operation(google, create(google, autopilot_cluster(name, vpc)))
    assert "did not become healthy" in finished.error.message
    cluster = get_cluster(google, name)
    assert cluster.status == CLUSTER_STATUS.ERROR and "did not become healthy" in cluster.status_message
    assert f"{parent(google)}/clusters/{name}" not in sandbox.sandbox.clusters
    delete_and_wait(google, name)


def test_a_failed_create_operation_leaves_no_cluster(sandbox, clean_faults, google, vpc):
    name = unique_name("quota")
    sandbox.run(
        sandbox.sandbox.faults.add_behaviour,
        "operation_error",
        api="container",
        operation="CREATE_CLUSTER",
        resource=name,
    )
    finished = wait_for_operation(google, create(google, autopilot_cluster(name, vpc)))
    assert finished.status == OPERATION_STATUS.DONE and "Quota exceeded" in finished.error.message
    with pytest.raises(exceptions.NotFound):
        get_cluster(google, name)


def test_container_calls_need_the_kubernetes_engine_api_enabled():
    with running_sandbox(profile="instant") as fresh:
        google = GoogleClients(fresh.info)
        with pytest.raises(exceptions.Forbidden, match="Kubernetes Engine API has not been used") as raised:
            google.clusters.list_clusters(request={"parent": parent(google)})
        assert raised.value.reason == "SERVICE_DISABLED"
