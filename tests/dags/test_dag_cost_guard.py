"""The cost guard (issue 15 section 3): a failed build with on_failure=teardown is torn down and the
run still fails; keep_for_hours tears a verified environment down after a deferred wait.

The gate's decisions are tested at task level (cheap); two whole-DAG runs prove what only a real run
shows: the gate reads this run's task states through the Task SDK, the deletes reach the twin, and
the run's final state is the build's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from gke_inference.operators.cost_guard import CostGuardGateOperator, KeepForOperator
from sandbox.testing import unique_name

REGION = "us-central1"
BUILD = ["gateway.apply_gateway", "verify.check_chat_completion"]


def gate() -> CostGuardGateOperator:
    return CostGuardGateOperator(task_id="start", plan={}, build_task_ids=BUILD, keep_for_task_id="keep_for")


def plan(on_failure: str, keep_for_hours: float = 0) -> dict:
    return {"on_failure": on_failure, "keep_for_hours": keep_for_hours, "region": REGION}


@pytest.mark.parametrize(
    ("states", "on_failure", "opens"),
    [
        ({"gateway.apply_gateway": "failed"}, "teardown", True),
        ({"gateway.apply_gateway": "failed"}, "keep", False),
        # upstream_failed is not a build failure of its own: a refused pre-flight created nothing
        ({"gateway.apply_gateway": "upstream_failed"}, "teardown", False),
        ({"gateway.apply_gateway": "success", "keep_for": "skipped"}, "teardown", False),
        ({"gateway.apply_gateway": "success", "keep_for": "success"}, "keep", True),
        ({"gateway.apply_gateway": "skipped", "keep_for": "skipped"}, "teardown", False),
    ],
)
def test_the_gate_opens_for_a_failed_build_it_may_tear_down_or_a_kept_time_that_passed(
    states, on_failure, opens
):
    assert (gate().teardown_reason(states, plan(on_failure)) is not None) is opens


class StatesTi:
    """The Task SDK's RuntimeTaskInstance as the gate uses it: this run's states by run id."""

    dag_id, run_id = "gke_inference_gateway", "manual__1"

    def __init__(self, states: dict) -> None:
        self.states, self.asked = states, []

    def get_task_states(self, **query):
        self.asked.append(query)
        return {self.run_id: self.states, "other_run": {"gateway.apply_gateway": "failed"}}


def test_the_gate_skips_or_relays_the_plan_from_this_runs_states():
    ti = StatesTi({"gateway.apply_gateway": "success", "keep_for": "skipped"})
    kept = CostGuardGateOperator(
        task_id="start", plan=plan("teardown"), build_task_ids=BUILD, keep_for_task_id="keep_for"
    )
    with pytest.raises(AirflowSkipException, match="the environment stays"):
        kept.execute({"ti": ti})
    assert ti.asked == [{"dag_id": ti.dag_id, "task_ids": [*BUILD, "keep_for"], "run_ids": [ti.run_id]}]
    failed = StatesTi({"gateway.apply_gateway": "failed"})
    assert kept.execute({"ti": failed}) == plan("teardown")


def test_keep_for_defers_for_the_kept_hours_and_zero_keeps():
    with pytest.raises(AirflowSkipException, match="stays up"):
        KeepForOperator(task_id="keep_for", hours=0).execute({})
    with pytest.raises(TaskDeferred) as deferred:
        KeepForOperator(task_id="keep_for", hours=1.5).execute({})
    from airflow.sdk import timezone

    wait = deferred.value.trigger.serialize()[1]["moment"] - timezone.utcnow()
    assert timedelta(hours=1.5) - timedelta(seconds=30) < wait <= timedelta(hours=1.5)
    assert deferred.value.method_name == "execute_complete"


# Whole-DAG runs (~60-100 s each here).


def environment(prefix: str) -> dict:
    return {
        "network_name": unique_name(f"{prefix}-vpc"),
        "subnet_name": unique_name(f"{prefix}-subnet"),
        "proxy_subnet_name": unique_name(f"{prefix}-proxy"),
        "cluster_name": unique_name(prefix),
        "gateway_port": 8080,
    }


def deleted(requests: list[dict], conf: dict) -> list[str]:
    """This environment's accepted Google deletes, in order, by kind."""
    names = {
        f"/clusters/{conf['cluster_name']}": "cluster",
        f"/subnetworks/{conf['subnet_name']}": "subnet",
        f"/subnetworks/{conf['proxy_subnet_name']}": "proxy-subnet",
        f"/networks/{conf['network_name']}": "network",
    }
    return [
        kind
        for e in requests
        if e["method"] == "DELETE" and e["api"] in {"container", "compute"} and e["status"] < 300
        for suffix, kind in names.items()
        if e["path"].endswith(suffix)
    ]


def all_deletes(sandbox, before: int) -> list[str]:
    return [f"{e['status']} {e['path']}" for e in sandbox.requests()[before:] if e["method"] == "DELETE"]


def states_of(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.mark.dag
def test_a_build_failed_half_way_is_torn_down_and_the_run_still_fails(dag, sandbox, clean_faults):
    conf = {**environment("cg"), "on_failure": "teardown"}
    project = sandbox.info["project_id"]
    # The Gateway apply is refused for good (403 is terminal: no retry) after the cluster is built.
    sandbox.faults_add(api="kube", method="PATCH", path="/gateways/inference-gateway$", status=403)
    before = len(sandbox.requests())

    dag_run = dag.test(run_conf=conf)

    states = states_of(dag_run)
    assert dag_run.state == "failed", states
    assert states["gateway.apply_gateway"] == "failed"
    assert states["run_report"] == "upstream_failed"
    cleanup = {task: state for task, state in states.items() if task.startswith("cleanup.")}
    assert set(cleanup.values()) == {"success"}, cleanup
    deletes = deleted(sandbox.requests()[before:], conf)
    # once each, the cluster first and the VPC last (the subnets in either order)
    shape = (deletes[0], sorted(deletes[1:3]), deletes[3:])
    assert shape == ("cluster", ["proxy-subnet", "subnet"], ["network"]), all_deletes(sandbox, before)
    assert (project, REGION, conf["cluster_name"]) not in sandbox.sandbox.gcp.clusters
    assert (project, conf["network_name"]) not in sandbox.sandbox.gcp.networks


@pytest.mark.dag
@pytest.mark.slow  # a second whole run: the slow lane; the gate and keep_for have task-level tests above
def test_a_verified_environment_is_torn_down_after_keep_for_hours(dag, sandbox, clean_faults):
    conf = {**environment("kf"), "keep_for_hours": 0.0005}  # 1.8 s
    project = sandbox.info["project_id"]
    before = len(sandbox.requests())

    dag_run = dag.test(run_conf=conf)

    states = states_of(dag_run)
    assert dag_run.state == "success", states
    assert states["body_routing.check_wrong_model_rejected"] == "success"
    assert states["keep_for"] == "success"
    cleanup = {task: state for task, state in states.items() if task.startswith("cleanup.")}
    assert set(cleanup.values()) == {"success"}, cleanup
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    kept = tis["keep_for"].end_date - tis["body_routing.check_wrong_model_rejected"].end_date
    assert kept >= timedelta(seconds=1.8), kept
    deletes = sorted(deleted(sandbox.requests()[before:], conf))
    assert deletes == ["cluster", "network", "proxy-subnet", "subnet"], all_deletes(sandbox, before)
    assert (project, REGION, conf["cluster_name"]) not in sandbox.sandbox.gcp.clusters
