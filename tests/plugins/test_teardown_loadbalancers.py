"""Teardown against GKE's load balancer: the wait for the Gateway's release, and the sweep of what a
cluster deleted first left behind (only this Gateway's; anything else is named, never deleted)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from gke_inference.hooks.gke import GKEClusterHook
from gke_inference.hooks.loadbalancers import LbResource, find_gateway_leftovers
from gke_inference.operators.teardown_gcp import SweepGatewayLoadBalancerOperator
from gke_inference.ownership import K8S_LABELS
from gke_inference.sensors.teardown import DEFER_TIMEOUT_MARGIN, GatewayReleasedSensor
from gke_inference.triggers.teardown import GatewayReleasedTrigger
from tests.plugins.conftest import GCP_CONN_ID, REGION, create_namespace

GATEWAY = "inference-gateway"
BASE = "https://www.googleapis.com/compute/v1/projects"


def gateway_objects(namespace: str) -> list[dict]:
    labels = dict(K8S_LABELS)
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": namespace, "labels": labels},
            "spec": {
                "gatewayClassName": "gke-l7-regional-external-managed",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "llm-route", "namespace": namespace, "labels": labels},
            "spec": {
                "parentRefs": [{"name": GATEWAY}],
                "rules": [{"backendRefs": [{"kind": "Service", "name": "vllm", "port": 8000}]}],
            },
        },
    ]


def lb_state(sandbox, project: str) -> list[tuple[str, str]]:
    def collect():
        return sorted((c, r["name"]) for c, r in sandbox.sandbox.gcp.lb_resources(project))

    return sandbox.run(collect)


def programmed_gateway(sandbox, cluster) -> str:
    """A programmed Gateway with its load balancer; returns its namespace."""
    hook = cluster.hook()
    namespace = create_namespace(hook)
    hook.apply(gateway_objects(namespace))
    deadline = time.monotonic() + 10
    while not any(
        c == "forwardingRules" and f"-{namespace}-{GATEWAY}-" in n
        for c, n in lb_state(sandbox, cluster.project_id)
    ):
        assert time.monotonic() < deadline, "the Gateway's load balancer never appeared"
        time.sleep(0.1)
    return namespace


def add_unrelated_forwarding_rule(sandbox, project: str) -> str:
    """Someone else's internal load balancer in the DAG's node subnet."""
    base = f"{BASE}/{project}"
    rule = {
        "kind": "compute#forwardingRule",
        "id": "42",
        "name": "someone-elses-ilb",
        "selfLink": f"{base}/regions/{REGION}/forwardingRules/someone-elses-ilb",
        "region": f"{base}/regions/{REGION}",
        "IPAddress": "10.0.0.50",
        "loadBalancingScheme": "INTERNAL_MANAGED",
        "network": f"{base}/global/networks/inference-vpc",
        "subnetwork": f"{base}/regions/{REGION}/subnetworks/inference-subnet",
    }
    key = (project, f"regions/{REGION}", rule["name"])
    sandbox.run(sandbox.sandbox.gcp.load_balancing["forwardingRules"].__setitem__, key, rule)
    return rule["name"]


def delete_cluster_out_of_band(cluster) -> None:
    gke = GKEClusterHook(location=REGION, gcp_conn_id=GCP_CONN_ID)
    operation = gke.delete_cluster(cluster.cluster_name, cluster.project_id)
    gke.wait_for_operation(operation, cluster.project_id, timeout=30)
    gke.wait_until_deleted(cluster.cluster_name, cluster.project_id, timeout=30)


def sweep(cluster, namespace: str) -> SweepGatewayLoadBalancerOperator:
    return SweepGatewayLoadBalancerOperator(
        task_id="sweep_load_balancer",
        project_id=cluster.project_id,
        gcp_conn_id=GCP_CONN_ID,
        region=REGION,
        network_name="inference-vpc",
        subnetwork_names=["inference-subnet", "proxy-only-subnet"],
        namespace=namespace,
        gateway_name=GATEWAY,
    )


def deletes(sandbox, project: str) -> list[str]:
    return [
        e["path"].rsplit("/", 2)[-2] + "/" + e["path"].rsplit("/", 1)[-1]
        for e in sandbox.requests("compute")
        if e["method"] == "DELETE" and f"/projects/{project}/" in e["path"]
    ]


def test_sweep_removes_only_the_gateways_leftovers_and_names_the_blocker(
    sandbox, clean_faults, cluster_factory
):
    cluster = cluster_factory(proxy_only_subnet=True)
    project = cluster.project_id
    namespace = programmed_gateway(sandbox, cluster)
    built = lb_state(sandbox, project)
    unrelated = add_unrelated_forwarding_rule(sandbox, project)
    delete_cluster_out_of_band(cluster)
    assert lb_state(sandbox, project) == sorted([*built, ("forwardingRules", unrelated)])  # left behind

    with pytest.raises(AirflowFailException, match=f"forwardingRules/{unrelated}"):
        sweep(cluster, namespace).execute({})

    assert lb_state(sandbox, project) == [("forwardingRules", unrelated)]
    deleted = deletes(sandbox, project)
    assert sorted(deleted) == sorted(f"{c}/{n}" for c, n in built)
    assert f"forwardingRules/{unrelated}" not in deleted
    first, last = (
        deleted.index(next(d for d in deleted if d.startswith("forwardingRules/"))),
        len(deleted) - 1,
    )
    assert first == 0 and deleted[last].startswith("firewalls/")  # users before what they use

    sandbox.run(sandbox.sandbox.gcp.load_balancing["forwardingRules"].clear)
    assert sweep(cluster, namespace).execute({}) == {"deleted": [], "absent": [], "blockers": []}


def test_an_interrupted_sweep_completes_on_a_rerun(sandbox, clean_faults, cluster_factory):
    cluster = cluster_factory(proxy_only_subnet=True)
    project = cluster.project_id
    namespace = programmed_gateway(sandbox, cluster)
    delete_cluster_out_of_band(cluster)
    service = next(n for c, n in lb_state(sandbox, project) if c == "backendServices" and "-vllm-" in n)
    sandbox.run(
        sandbox.sandbox.faults.add_behaviour,
        "operation_error",
        api="compute",
        operation="delete",
        resource=service,
    )
    with pytest.raises(AirflowFailException, match=service):
        sweep(cluster, namespace).execute({})
    left = lb_state(sandbox, project)
    assert ("backendServices", service) in left and not any(c == "forwardingRules" for c, _ in left)

    sandbox.faults_clear()
    result = sweep(cluster, namespace).execute({})
    assert f"regions/{REGION}/backendServices/{service}" in result["deleted"]
    assert lb_state(sandbox, project) == []


async def first_event(trigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(first(), 30)


async def test_the_wait_lasts_until_gke_releases_the_load_balancer(sandbox, clean_faults, cluster_factory):
    cluster = await asyncio.to_thread(cluster_factory, proxy_only_subnet=True)
    namespace = await asyncio.to_thread(programmed_gateway, sandbox, cluster)
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "lb_cleanup_late", count=2, namespace=namespace)
    hook = cluster.hook()
    await asyncio.to_thread(hook.delete, gateway_objects(namespace))
    started = time.time()
    trigger = GatewayReleasedTrigger(
        cluster_name=cluster.cluster_name,
        location=REGION,
        project_id=cluster.project_id,
        gcp_conn_id=GCP_CONN_ID,
        namespace=namespace,
        gateway_name=GATEWAY,
        network_name="inference-vpc",
        started_at=started,
        deadline=started + 30,
        poll_interval=0.2,
    )
    event = await first_event(trigger)

    assert event["status"] == "success" and event["result"] == [], event
    assert time.time() - started >= 2.0  # two postponed cleanups of >= 1 s each
    polls = [
        e
        for e in sandbox.requests("kube")
        if e["method"] == "GET" and e["path"].endswith(f"/gateways/{GATEWAY}")
    ]
    assert len(polls) >= 5
    assert lb_state(sandbox, cluster.project_id) == []


async def test_the_wait_times_out_naming_what_is_left(sandbox, clean_faults, cluster_factory):
    cluster = await asyncio.to_thread(cluster_factory, proxy_only_subnet=True)
    namespace = await asyncio.to_thread(programmed_gateway, sandbox, cluster)
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "lb_cleanup_late", namespace=namespace)
    await asyncio.to_thread(cluster.hook().delete, gateway_objects(namespace))
    started = time.time()
    trigger = GatewayReleasedTrigger(
        cluster_name=cluster.cluster_name,
        location=REGION,
        project_id=cluster.project_id,
        gcp_conn_id=GCP_CONN_ID,
        namespace=namespace,
        gateway_name=GATEWAY,
        network_name="inference-vpc",
        started_at=started,
        deadline=started + 1.5,
        poll_interval=0.2,
    )
    event = await first_event(trigger)
    assert event["status"] == "timeout"
    assert "finalizers (gateway.finalizer.networking.gke.io)" in event["message"]
    assert any(left.startswith(f"regions/{REGION}/forwardingRules/gkegw1-") for left in event["result"])


def test_the_sensor_defers_and_reports(sandbox, gcp_connection):
    sensor = GatewayReleasedSensor(
        task_id="wait_gateway_released",
        cluster_name="c",
        location=REGION,
        project_id="p",
        namespace="default",
        gateway_name=GATEWAY,
        network_name="inference-vpc",
        wait_timeout=900,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.timeout == timedelta(seconds=900 + DEFER_TIMEOUT_MARGIN)
    assert isinstance(deferred.value.trigger, GatewayReleasedTrigger)
    assert sensor.execute_complete({}, {"status": "success", "message": "gone", "result": []}) == {
        "message": "gone",
        "left": [],
    }
    with pytest.raises(AirflowFailException):
        sensor.execute_complete({}, {"status": "failed", "message": "403"})


def resource(collection: str, name: str, scope: str = f"regions/{REGION}", **fields) -> LbResource:
    link = f"{BASE}/p/{scope}/{collection}/{name}"
    return LbResource(collection, scope, name, link, **fields)


def test_names_cut_at_63_characters_still_prove_the_gateway():
    network = f"{BASE}/p/global/networks/vpc"
    namespace, gateway = "llm-d-inference-scheduling", "qwen2-3b-pattern1-inference-gateway"
    long_name = "gkegw1-pzx5-llm-d-inference-s-qwen2-3b-pattern1-in-jfiarzj058qe"
    assert len(long_name) == 63
    short_other = "gkegw1-pzx5-llm-d-inference-s-qwen2-3b-pattern1-i-jfiarzj058qe"  # not cut by GKE
    found = find_gateway_leftovers(
        [
            resource("forwardingRules", long_name, network=network),
            resource("forwardingRules", short_other, network=network),
        ],
        namespace=namespace,
        gateway=gateway,
        network_link=network,
        region=REGION,
    )
    assert [r.name for r in found.resources] == [long_name]


def test_a_same_named_gateway_of_another_vpc_is_never_ours():
    """Two environments in one project, each with default/inference-gateway: their external
    addresses, proxies and URL maps name no VPC, so the name alone proves nothing."""
    ours, theirs = f"{BASE}/p/global/networks/ours", f"{BASE}/p/global/networks/theirs"

    def frontends(cluster_hash: str, network: str) -> list[LbResource]:
        prefix = f"gkegw1-{cluster_hash}-default-inference-gateway"
        url_map = resource("urlMaps", f"{prefix}-map000000000")
        proxy = resource("targetHttpProxies", f"{prefix}-map000000000", refs=(url_map.self_link,))
        rule = resource("forwardingRules", f"{prefix}-rule00000000", network=network, refs=(proxy.self_link,))
        return [rule, proxy, url_map, resource("addresses", f"{prefix}-addr00000000")]

    found = find_gateway_leftovers(
        frontends("aaaa", ours) + frontends("bbbb", theirs),
        namespace="default",
        gateway="inference-gateway",
        network_link=ours,
        region=REGION,
    )
    assert sorted(r.name.split("-")[1] for r in found.resources) == ["aaaa"] * 4
    # Interrupted: our forwarding rule is already gone; the firewall on our VPC still names our hash.
    firewall = resource("firewalls", f"gkegw1-aaaa-l7-ours-{REGION}", network=ours)
    leftovers = [r for r in frontends("aaaa", ours) if r.collection != "forwardingRules"]
    found = find_gateway_leftovers(
        [firewall, *leftovers, *frontends("bbbb", theirs)],
        namespace="default",
        gateway="inference-gateway",
        network_link=ours,
        region=REGION,
    )
    assert sorted(r.name for r in found.resources) == sorted(r.name for r in [firewall, *leftovers])
