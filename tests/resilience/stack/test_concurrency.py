"""max_active_runs=1: a second run waits, queued, while one is active, then runs on its own."""

from __future__ import annotations

import time

import pytest

from tests.resilience.stack.conftest import environment_names

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

# Passes the trigger API's per-field checks, then fails at plan_run: the node subnet overlaps the pods range.
CONTRADICTORY = {"subnet_range": "10.4.0.0/20"}


# The first run is held at preflight's GPU lookup for this long, then refused for good (403): an
# active run of known, short length (a whole teardown run took 85 s here), and nothing is created.
HOLD_S = 5
GPU_LOOKUP = r"/aggregated/acceleratorTypes$"


# Bounds on waits for conditions, not expected durations: generous, so a loaded 2-core machine
# cannot fail the test, and a hang still ends it.
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 400


def second_states_while_first_runs(airflow_api, first: str, second: str) -> tuple[set[str], str]:
    """The second run's states sampled while the first is active, and the first's final state.

    The second's state is read before the first is seen still running, so every sample was taken
    while the first was active (a finished run never runs again): no race at the first's end.
    """
    seen: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        second_state = airflow_api.run_state(second)
        first_state = airflow_api.run_state(first)
        if first_state != "running":
            return seen, first_state
        seen.add(second_state)
        assert time.monotonic() < deadline, f"first run still running: {airflow_api.task_states(first)}"
        time.sleep(0.5)


def test_a_second_run_stays_queued_until_the_first_finishes(airflow_api, sandbox, clean_faults):
    sandbox.faults_add(api="compute", method="GET", path=GPU_LOOKUP, delay=HOLD_S, status=403)
    first = airflow_api.trigger_ok(environment_names("f2-first"))
    airflow_api.wait_for(first, {"running"}, timeout=START_TIMEOUT_S)

    second = airflow_api.trigger_ok(CONTRADICTORY)
    second_states_while_first_active, first_state = second_states_while_first_runs(airflow_api, first, second)
    requests_before_second = len(sandbox.requests())

    first_tasks = airflow_api.task_states(first)
    assert first_state == "failed" and first_tasks["preflight"] == "failed", first_tasks
    assert any(e["status"] == 403 and "acceleratorTypes" in e["path"] for e in sandbox.requests("compute"))
    assert second_states_while_first_active == {"queued"}

    # Once alone, the second run starts and is refused by plan_run, before any request is made.
    assert airflow_api.wait_finished(second, timeout=START_TIMEOUT_S) == "failed"
    (plan_run,) = [ti for ti in airflow_api.task_instances(second) if ti["task_id"] == "plan_run"]
    assert plan_run["state"] == "failed"
    assert plan_run["try_number"] == 1, "an invalid conf is final: no retry"
    assert "success" not in airflow_api.task_states(second).values()
    assert sandbox.requests()[requests_before_second:] == []
