"""ClusterRunningTrigger: serialization, and run() driven on asyncio against the sandbox."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from airflow.sdk.module_loading import import_string

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, GKEClusterHook
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from gke_inference.triggers.cluster import ClusterRunningTrigger
from tests.plugins.conftest import REGION, unique

EVENT_TIMEOUT = 20


@pytest.fixture
def subnet(project) -> tuple[str, str]:
    hook = ComputeNetworkHook()
    network, subnet = unique("vpc"), unique("nodes")
    hook.ensure_network(network, project, description=NETWORK_DESCRIPTION)
    ranges = {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"}
    hook.ensure_subnetwork(
        SubnetworkSpec(subnet, REGION, "10.0.0.0/20", ranges),
        network,
        project,
        description=NETWORK_DESCRIPTION,
    )
    return network, subnet


def start_cluster(project: str, network: str, subnet: str) -> str:
    name = unique("cluster")
    spec = AutopilotClusterSpec(name, network, subnet, "pods-range", "services-range", "RAPID", GCP_LABELS)
    GKEClusterHook(location=REGION).create_cluster(spec.to_cluster(), project)
    return name


def trigger_for(project: str, cluster: str, **overrides) -> ClusterRunningTrigger:
    now = time.time()
    args = {
        "cluster_name": cluster,
        "location": REGION,
        "project_id": project,
        "poll_interval": 0.05,
        "started_at": now,
        "deadline": now + 60,
    }
    return ClusterRunningTrigger(**(args | overrides))


async def first_event(trigger: ClusterRunningTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(first(), EVENT_TIMEOUT)


def test_serialize_round_trips_through_its_classpath():
    trigger = trigger_for("p", "c", deadline=1234.5, impersonation_chain=["sa@p.iam.gserviceaccount.com"])

    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)

    assert classpath == "gke_inference.triggers.cluster.ClusterRunningTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert all(isinstance(v, str | int | float | list | type(None)) for v in kwargs.values())


def progress_lines(capsys) -> list[str]:
    # Airflow's structured logging writes trigger logs to stdout.
    return [line for line in capsys.readouterr().out.splitlines() if "PROVISIONING (elapsed" in line]


async def test_provisioning_cluster_yields_success_once_running(
    sandbox, project, subnet, slow_cluster_provisioning, capsys
):
    cluster = start_cluster(project, *subnet)

    event = await first_event(trigger_for(project, cluster))

    assert event["status"] == "success"
    assert event["result"]["name"] == cluster and event["result"]["status"] == "RUNNING"
    assert event["result"]["current_master_version"] and event["result"]["endpoint"].startswith("127.")
    polls = [e for e in sandbox.requests("container") if e["path"].endswith(f"clusters/{cluster}")]
    # Several polls while provisioning, but progress is logged at its own, slower pace (30 s).
    assert len(polls) > 2 and len(progress_lines(capsys)) == 1


async def test_cluster_going_to_error_fails_at_once_with_its_message(sandbox, project, subnet, clean_faults):
    sandbox.faults_add(behaviour="cluster_error", project=project)
    cluster = start_cluster(project, *subnet)
    started = time.monotonic()

    event = await first_event(trigger_for(project, cluster, deadline=time.time() + 60))

    assert event["status"] == "failed"
    assert event["message"].startswith(f"cluster '{cluster}' is ERROR: Cluster creation failed")
    assert time.monotonic() - started < 10


async def test_missing_cluster_fails(project):
    event = await first_event(trigger_for(project, unique("absent")))

    assert event == {"status": "failed", "message": event["message"], "result": None}
    assert "does not exist" in event["message"]


async def test_transient_errors_are_retried_inside_the_trigger(sandbox, project, subnet, clean_faults):
    cluster = start_cluster(project, *subnet)
    path = f"clusters/{cluster}$"
    sandbox.faults_add(api="container", method="GET", path=path, status=503, count=2)
    sandbox.faults_add(api="container", method="GET", path=path, drop=True, count=1)

    event = await first_event(trigger_for(project, cluster))

    assert event["status"] == "success"
    statuses = [
        e["status"] for e in sandbox.requests("container") if e["path"].endswith(f"clusters/{cluster}")
    ]
    assert statuses[:2] == [503, 503] and statuses[-1] == 200


async def test_deadline_reached_while_provisioning_is_a_timeout(project, subnet, slow_cluster_provisioning):
    cluster = start_cluster(project, *subnet)

    event = await first_event(trigger_for(project, cluster, deadline=time.time() - 1))

    assert event["status"] == "timeout"  # the sensor lets the task retry (test_operators_gcp)
    assert f"cluster '{cluster}': gave up after" in event["message"] and "PROVISIONING" in event["message"]


async def test_progress_is_logged_with_elapsed_and_time_left(
    project, subnet, slow_cluster_provisioning, capsys
):
    cluster = start_cluster(project, *subnet)

    await first_event(trigger_for(project, cluster, deadline=time.time() + 60, log_interval=0))

    progress = progress_lines(capsys)
    assert progress and all(re.search(r"\(elapsed \d+s, \d+s left\)", line) for line in progress)
