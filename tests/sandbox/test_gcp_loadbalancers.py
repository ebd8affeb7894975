"""A programmed Gateway's load balancer in the Compute twin: built, kept by GKE's finalizer while the
Gateway is deleted, blocking its subnets and VPC, and left behind when the cluster goes first."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import pytest
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from kubernetes.dynamic import DynamicClient

from sandbox.gcp.loadbalancers import short_hash
from sandbox.gcp.state import COMPUTE_SERVICE
from sandbox.testing import GoogleClients, wait_until
from tests.sandbox.conftest import ClusterHandle, start_cluster
from tests.sandbox.test_kube_controllers import (
    GATEWAY_V1,
    POOL_BACKEND,
    apply,
    gateway,
    http_route,
    inference_pool,
)

REGION = "us-central1"
FINALIZER = "gateway.finalizer.networking.gke.io"
BASE = "https://www.googleapis.com/compute/v1/projects"


def add_network_and_subnet(handle: ClusterHandle) -> None:
    """The cluster's VPC and node subnet, stored as the Compute API stores them."""
    cluster = handle.cluster
    base = f"{BASE}/{cluster.project}"
    network = {
        "kind": "compute#network",
        "id": "1",
        "name": cluster.network,
        "selfLink": f"{base}/global/networks/{cluster.network}",
        "autoCreateSubnetworks": False,
    }
    subnet = {
        "kind": "compute#subnetwork",
        "id": "2",
        "name": cluster.subnetwork,
        "purpose": "PRIVATE",
        "ipCidrRange": "10.0.0.0/20",
        "region": f"{base}/regions/{cluster.region}",
        "network": network["selfLink"],
        "selfLink": f"{base}/regions/{cluster.region}/subnetworks/{cluster.subnetwork}",
    }
    proxy = {
        **subnet,
        "id": "3",
        "name": f"proxy-{cluster.network}",
        "purpose": "REGIONAL_MANAGED_PROXY",
        "role": "ACTIVE",
        "ipCidrRange": "10.129.0.0/23",
        "selfLink": f"{base}/regions/{cluster.region}/subnetworks/proxy-{cluster.network}",
    }
    gcp = handle.sandbox.sandbox.gcp
    handle.run(gcp.project(cluster.project).enable, COMPUTE_SERVICE)
    handle.run(gcp.networks.__setitem__, (cluster.project, cluster.network), network)
    for stored_subnet in (subnet, proxy):
        key = (cluster.project, cluster.region, stored_subnet["name"])
        handle.run(gcp.subnetworks.__setitem__, key, stored_subnet)


@pytest.fixture(scope="module")
def lb_cluster(sandbox):
    number = time.monotonic_ns() % 100_000
    cluster = start_cluster(sandbox, network=f"lb-vpc-{number}", subnetwork=f"lb-subnet-{number}")
    token = sandbox.run(sandbox.sandbox.tokens.mint)
    with tempfile.TemporaryDirectory(prefix="lb-test-") as workdir:
        handle = ClusterHandle(sandbox, cluster, token, Path(workdir))
        add_network_and_subnet(handle)
        try:
            yield handle
        finally:
            sandbox.call(cluster.stop)


@pytest.fixture(scope="module")
def lb_dynamic(lb_cluster):
    with lb_cluster.api_client() as api_client:
        yield DynamicClient(api_client)


@pytest.fixture(scope="module")
def compute(sandbox):
    """Compute through google-api-python-client and its bundled discovery document."""
    clients = GoogleClients(sandbox.info)
    return discovery.build(
        "compute",
        "v1",
        credentials=clients.credentials,
        client_options={"api_endpoint": f"{sandbox.info['api_endpoint']}/compute/v1/"},
        static_discovery=True,
        cache_discovery=False,
    )


def build_gateway(handle: ClusterHandle, dynamic: DynamicClient, namespace: str, name: str) -> dict:
    apply(dynamic, inference_pool("pool", namespace, "picker"), namespace)
    apply(dynamic, http_route(f"{name}-route", namespace, name, POOL_BACKEND), namespace)
    apply(dynamic, gateway(name, namespace), namespace)
    return handle.wait_for(
        lambda: (
            (g := handle.cluster.store.get(GATEWAY_V1, "Gateway", namespace, name))
            and FINALIZER in (g["metadata"].get("finalizers") or [])
            and g
        ),
        what="the Gateway to be programmed with GKE's finalizer",
    )


def lb_names(handle: ClusterHandle) -> dict[str, list[str]]:
    """This cluster's load-balancer resources (other tests' clusters share the session's project)."""
    gcp, cluster = handle.sandbox.sandbox.gcp, handle.cluster
    where = f"{cluster.project}/{cluster.location}/{cluster.name}"
    prefixes = (
        f"gkegw1-{short_hash(where, length=4)}-",
        f"k8s1-{hashlib.sha256(where.encode()).hexdigest()[:8]}-",
    )

    def names():
        return {
            collection: sorted(
                name
                for (project, _, name) in resources
                if project == cluster.project and name.startswith(prefixes)
            )
            for collection, resources in gcp.load_balancing.items()
        }

    return handle.run(names)


def refusal(call) -> dict:
    with pytest.raises(HttpError) as caught:
        call.execute()
    assert caught.value.resp.status == 400
    return caught.value.error_details[0] if caught.value.error_details else {}


def test_a_programmed_gateway_builds_its_load_balancer(sandbox, lb_cluster, lb_dynamic, compute):
    project = lb_cluster.cluster.project
    programmed = build_gateway(lb_cluster, lb_dynamic, "default", "inference-gateway")

    listed = compute.forwardingRules().list(project=project, region=REGION).execute()["items"]
    rules = [r for r in listed if r["network"].endswith(f"/global/networks/{lb_cluster.cluster.network}")]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["kind"] == "compute#forwardingRule"
    assert rule["name"].startswith("gkegw1-") and "-default-inference-gateway-" in rule["name"]
    assert rule["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert rule["IPAddress"] == programmed["status"]["addresses"][0]["value"]
    assert rule["network"].endswith(f"/global/networks/{lb_cluster.cluster.network}")
    proxy = (
        compute.regionTargetHttpProxies()
        .get(project=project, region=REGION, targetHttpProxy=rule["target"].rsplit("/", 1)[-1])
        .execute()
    )
    url_map = compute.regionUrlMaps().get(project=project, region=REGION, urlMap=proxy["name"]).execute()
    assert url_map["selfLink"] == proxy["urlMap"]
    cluster_hash = rule["name"].split("-")[1]
    listed = compute.regionBackendServices().list(project=project, region=REGION).execute()["items"]
    services = [s for s in listed if s["name"].startswith(f"gkegw1-{cluster_hash}-")]
    assert {s["name"].split("-")[2] for s in services} == {"default"}
    assert set(url_map["pathMatchers"][0].values()) | {url_map["defaultService"]} >= {
        s["selfLink"] for s in services
    }
    assert any("-gw-serve404-80-" in s["name"] for s in services)
    assert any("-pool-8000-" in s["name"] for s in services)
    checks = compute.regionHealthChecks().list(project=project, region=REGION).execute()["items"]
    assert {c["name"] for c in checks if c["name"].startswith(f"gkegw1-{cluster_hash}-")} == {
        s["name"] for s in services
    }
    negs = compute.networkEndpointGroups().aggregatedList(project=project).execute()["items"]
    ours = rule["network"]  # the session's project holds other tests' clusters and their NEGs
    zones = [
        scope
        for scope, listed in negs.items()
        if any(neg["network"] == ours for neg in listed.get("networkEndpointGroups", []))
    ]
    assert zones and all(scope.startswith(f"zones/{REGION}-") for scope in zones)
    aggregated = compute.forwardingRules().aggregatedList(project=project).execute()["items"]
    assert rule["name"] in [r["name"] for r in aggregated[f"regions/{REGION}"]["forwardingRules"]]
    firewalls = compute.firewalls().list(project=project).execute()["items"]
    assert [f["name"] for f in firewalls if f["network"] == rule["network"]] == [
        f"gkegw1-{cluster_hash}-l7-{lb_cluster.cluster.network}-{REGION}"
    ]
    annotations = programmed["metadata"]["annotations"]
    assert rule["name"] in annotations["networking.gke.io/forwarding-rules"]


def test_deleting_the_gateway_keeps_it_until_its_load_balancer_is_gone(
    sandbox, clean_faults, lb_cluster, lb_dynamic, compute
):
    project, cluster = lb_cluster.cluster.project, lb_cluster.cluster
    build_gateway(lb_cluster, lb_dynamic, "default", "inference-gateway")
    late = sandbox.run(sandbox.sandbox.faults.add_behaviour, "lb_cleanup_late", name="inference-gateway")
    resource = lb_dynamic.resources.get(api_version=GATEWAY_V1, kind="Gateway")
    answer = resource.delete(name="inference-gateway", namespace="default").to_dict()
    assert answer["metadata"]["deletionTimestamp"]  # the object, not a Status: it is still there

    # The controller came back to the Gateway after its cleanup was due, twice, and put it off each time.
    wait_until(lambda: sandbox.fault_uses(late) >= 2, timeout=10)
    stalled = lb_cluster.run(cluster.store.get, GATEWAY_V1, "Gateway", "default", "inference-gateway")
    assert stalled is not None and FINALIZER in stalled["metadata"]["finalizers"]
    assert lb_names(lb_cluster)["forwardingRules"]
    proxy_subnet = f"proxy-{cluster.network}"
    details = refusal(compute.subnetworks().delete(project=project, region=REGION, subnetwork=proxy_subnet))
    assert details.get("reason") == "resourceInUseByAnotherResource"
    with pytest.raises(HttpError) as caught:
        compute.subnetworks().delete(project=project, region=REGION, subnetwork=cluster.subnetwork).execute()
    assert "is already being used by" in str(caught.value) and "networkEndpointGroups/k8s1-" in str(
        caught.value
    )

    sandbox.faults_clear()
    wait_until(
        lambda: (
            lb_cluster.run(cluster.store.get, GATEWAY_V1, "Gateway", "default", "inference-gateway") is None
        ),
        timeout=10,
    )
    assert lb_names(lb_cluster) == {collection: [] for collection in lb_names(lb_cluster)}
    operation = (
        compute.subnetworks().delete(project=project, region=REGION, subnetwork=proxy_subnet).execute()
    )
    assert operation["kind"] == "compute#operation"


def test_deleting_the_cluster_first_leaves_the_load_balancer(sandbox, compute):
    number = time.monotonic_ns() % 100_000
    cluster = start_cluster(sandbox, network=f"orphan-vpc-{number}", subnetwork=f"orphan-subnet-{number}")
    token = sandbox.run(sandbox.sandbox.tokens.mint)
    with tempfile.TemporaryDirectory(prefix="lb-test-") as workdir:
        handle = ClusterHandle(sandbox, cluster, token, Path(workdir))
        add_network_and_subnet(handle)
        with handle.api_client() as api_client:
            build_gateway(handle, DynamicClient(api_client), "default", "orphaned")
        sandbox.call(cluster.stop)
    time.sleep(sandbox.sandbox.profile.lb_cleanup * 3)

    def on_network() -> list[str]:
        network_link = f"{BASE}/{cluster.project}/global/networks/{cluster.network}"
        return [
            r["name"]
            for _, r in sandbox.sandbox.gcp.lb_resources(cluster.project)
            if r.get("network") == network_link
        ]

    left = sandbox.run(on_network)
    assert any(name.startswith("gkegw1-") and "-default-orphaned-" in name for name in left)
    assert any(name.startswith("k8s1-") for name in left)
    with pytest.raises(HttpError) as caught:
        compute.subnetworks().delete(
            project=cluster.project, region=REGION, subnetwork=f"proxy-{cluster.network}"
        ).execute()
    assert "forwardingRules/gkegw1-" in str(caught.value)
