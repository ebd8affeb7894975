"""max_active_runs=1: a second run waits, queued, while one is active, then runs on its own."""

from __future__ import annotations

import time

import pytest

from sandbox.testing import unique_name

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

# Passes the trigger API's per-field checks, then fails at plan_run: the node subnet overlaps the pods range.
CONTRADICTORY = {"subnet_range": "10.4.0.0/20"}


def absent_environment() -> dict:
    return {
        "mode": "teardown",
        "network_name": unique_name("f2-absent-vpc"),
        "subnet_name": unique_name("f2-absent-subnet"),
        "proxy_subnet_name": unique_name("f2-absent-proxy"),
        "cluster_name": unique_name("f2-absent"),
    }


def test_a_second_run_stays_queued_until_the_first_finishes(airflow_api, sandbox):
    first = airflow_api.trigger_ok(absent_environment())
    airflow_api.wait_for(first, {"running"}, timeout=180)  # a loaded 2-core machine can take a while

    second = airflow_api.trigger_ok(CONTRADICTORY)
    second_states_while_first_active = set()
    deadline = time.monotonic() + 180
    while (first_state := airflow_api.run_state(first)) == "running":
        assert time.monotonic() < deadline, f"first run still running: {airflow_api.task_states(first)}"
        second_states_while_first_active.add(airflow_api.run_state(second))
        time.sleep(0.5)
    requests_before_second = len(sandbox.requests())

    assert first_state == "success", airflow_api.task_states(first)
    assert second_states_while_first_active == {"queued"}

    # Once alone, the second run starts and is refused by plan_run, before any request is made.
    assert airflow_api.wait_finished(second, timeout=120) == "failed"
    (plan_run,) = [ti for ti in airflow_api.task_instances(second) if ti["task_id"] == "plan_run"]
    assert plan_run["state"] == "failed"
    assert plan_run["try_number"] == 1, "an invalid conf is final: no retry"
    assert "success" not in airflow_api.task_states(second).values()
    assert sandbox.requests()[requests_before_second:] == []
