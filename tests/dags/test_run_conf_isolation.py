"""Airflow 3.3 harness trap: two ``dag.test(run_conf=...)`` calls in one process share the DAG's Param
objects, so a key the second conf leaves out kept the first run's value (issue 13, section 6).
tests/conftest.py restores them after every ``dag.test()``; these tests prove it."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param
from airflow.sdk.definitions.param import process_params

from tests.conftest import params_kept


def tiny_dag() -> DAG:
    with DAG(
        "conf_isolation_probe",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"region": Param("us-central1", type="string"), "mode": Param("ensure", type="string")},
    ) as dag:
        EmptyOperator(task_id="task")
    return dag


def test_a_run_changes_the_dags_params_in_place_and_params_kept_undoes_it():
    dag = tiny_dag()
    task = dag.get_task("task")

    with params_kept(dag):
        first = process_params(
            dag, task, {"region": "europe-west4", "mode": "teardown"}, suppress_exception=False
        )
        leaked = process_params(dag, task, {}, suppress_exception=False)
    second = process_params(dag, task, {"mode": "rebuild"}, suppress_exception=False)

    assert first == {"region": "europe-west4", "mode": "teardown"}
    assert leaked == first, "Airflow no longer shares Param objects between runs: params_kept may go"
    assert second == {"region": "us-central1", "mode": "rebuild"}


def test_the_wrapped_dag_test_keeps_the_params(monkeypatch):
    """What the session fixture installs on ``DAG.test``: a run's conf is gone once it returns (the
    real DAG fixture is checked after a real run in test_dag_broken_teardown)."""
    dag = tiny_dag()
    task = dag.get_task("task")

    def fake_run(self, run_conf=None, **kwargs):
        return process_params(self, self.get_task("task"), run_conf, suppress_exception=False)

    monkeypatch.setattr(DAG, "test", fake_run)
    from tests import conftest

    gen = conftest.dag_test_keeps_params.__wrapped__()
    next(gen)
    try:
        assert dag.test(run_conf={"region": "europe-west4"})["region"] == "europe-west4"
    finally:
        next(gen, None)
    assert process_params(dag, task, {}, suppress_exception=False)["region"] == "us-central1"
