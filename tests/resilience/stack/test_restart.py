"""A crash of the scheduler and the triggerer while a sensor is deferred loses nothing and repeats nothing.

cluster.wait_cluster_running defers to the triggerer while the cluster is PROVISIONING. The sandbox
holds the cluster PROVISIONING until the test releases it (no time budget for the machine to reach
the deferral), and once the sensor is deferred it answers the cluster's GET with 503 (a transient
error the trigger polls through). Both components are then SIGKILLed with their workers and started
again; once the new triggerer polls, the 503s stop and the cluster is released.
The run must succeed, and the sandbox must have seen each create exactly once.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from sandbox.core.faults import creating_requests
from tests.resilience.stack.conftest import environment_names

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

HELD_S = 3600  # "until released": longer than the test's own timeout
SENSOR = "cluster.wait_cluster_running"
BUSY = {"running", "queued", "scheduled", "up_for_retry", "restarting"}


def wait_for_states(airflow_api, run_id: str, accept, what: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = airflow_api.task_states(run_id)
        if accept(states):
            return states
        assert states.get(SENSOR) not in {"success", "failed"}, f"the sensor finished too early: {states}"
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s: {airflow_api.task_states(run_id)}")


def wait_for_cluster_poll(sandbox, cluster_name: str, after: float, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            entry["ts"] > after
            and entry["method"] == "GET"
            and entry["path"].endswith(f"/clusters/{cluster_name}")
            for entry in sandbox.requests("container")
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"the restarted triggerer did not poll cluster {cluster_name} within {timeout} s")


def test_killing_scheduler_and_triggerer_while_deferred_repeats_no_create(
    airflow_stack, airflow_api, sandbox, slow_provisioning, clean_faults
):
    slow_provisioning(HELD_S)
    conf = environment_names("f2-restart")
    requests_before = len(sandbox.requests())
    run_id = airflow_api.trigger_ok(conf)

    wait_for_states(airflow_api, run_id, lambda s: s.get(SENSOR) == "deferred", "deferred sensor")
    sandbox.faults_add(api="container", method="GET", path=f"/clusters/{conf['cluster_name']}$", status=503)
    wait_for_states(
        airflow_api,
        run_id,
        lambda s: s.get(SENSOR) == "deferred" and not BUSY & set(s.values()),
        "moment where the deferred sensor is all that is in flight",
    )

    airflow_stack.kill("scheduler", "triggerer")
    assert airflow_api.task_states(run_id)[SENSOR] == "deferred"
    restarted_at = time.time()
    airflow_stack.start("scheduler", "triggerer")
    wait_for_cluster_poll(sandbox, conf["cluster_name"], after=restarted_at)
    sandbox.faults_clear()
    slow_provisioning(0)  # release the cluster: it becomes RUNNING and the trigger's next poll sees it

    assert airflow_api.wait_finished(run_id, timeout=400) == "success", airflow_api.task_states(run_id)
    made = Counter(creating_requests(sandbox.requests()[requests_before:]))
    # Both subnetworks (node and proxy-only) are POSTed to one collection; everything else is one create.
    subnetworks = f"POST /compute/v1/projects/{sandbox.info['project_id']}/regions/us-central1/subnetworks"
    assert made.pop(subnetworks) == 2
    assert {request: count for request, count in made.items() if count > 1} == {}
    assert any(request.endswith("/clusters") for request in made), made
    assert any("/gateways" in request for request in made), made
