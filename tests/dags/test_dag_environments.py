"""The DAG file with environment definitions: one DAG each, or an import error naming file and field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TWO_ENVIRONMENTS = """\
environments:
  - name: weekly
    description: Does the recipe still build?
    schedule: "0 4 * * 1"
    schedule_mode: rebuild
    params: {cluster_name: weekly, network_name: weekly-vpc, keep_for_hours: 1}
    notify: {webhook_conn_id: weekly_hook, deadline_minutes: 45}
  - name: staging
    schedule_mode: ensure
    params: {region: europe-west4, cluster_name: staging, network_name: staging-vpc}
"""


def parse(monkeypatch, directory: Path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("GKE_INFERENCE_ENVIRONMENTS_DIR", str(directory))
    for name in ("GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID", "GKE_INFERENCE_NOTIFY_SMTP_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    return DagBag(dag_folder=str(REPO / "dags"))


def test_each_environment_becomes_its_own_dag_from_the_same_code(tmp_path, monkeypatch):
    (tmp_path / "envs.yaml").write_text(TWO_ENVIRONMENTS)
    bag = parse(monkeypatch, tmp_path)

    assert bag.import_errors == {}
    assert sorted(bag.dags) == [
        "gke_inference_gateway__staging",
        "gke_inference_gateway__weekly",
        "gke_inference_load_test",
    ]
    weekly, staging = bag.dags["gke_inference_gateway__weekly"], bag.dags["gke_inference_gateway__staging"]
    assert {task.task_id for task in weekly.tasks} == {task.task_id for task in staging.tasks}
    assert "env:weekly" in weekly.tags and "env:staging" in staging.tags
    assert weekly.description == "Does the recipe still build?"
    assert (weekly.schedule, staging.schedule) == ("0 4 * * 1", None)
    assert weekly.get_task("plan_run").schedule_mode == "rebuild"
    assert staging.get_task("plan_run").schedule_mode == "ensure"
    assert staging.params["region"] == "europe-west4" and weekly.params["keep_for_hours"] == 1
    # Targets per environment: the weekly one posts to its webhook, staging (no notify) to the
    # deployment's targets, none here.
    (notifier,) = weekly.get_task("plan_run").on_failure_callback
    assert notifier.target.conn_id == "weekly_hook"
    assert staging.deadline is None
    # Late means 45 minutes past the build, plus the hour a verified run holds its environment.
    (alert,) = weekly.deadline if isinstance(weekly.deadline, list) else [weekly.deadline]
    assert alert.interval == timedelta(minutes=45 + 60)
    assert [cb.__name__ for cb in staging.get_task("plan_run").on_failure_callback] == ["say_not_configured"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: staging\nparams: {regoin: europe-west4}\n", "params: unknown param 'regoin'"),
        ("name: staging\nschedule: sometimes\n", "schedule: 'sometimes'"),
    ],
)
def test_a_wrong_definition_is_an_import_error_naming_file_and_field(tmp_path, monkeypatch, text, field):
    (tmp_path / "good.yaml").write_text("name: weekly\nparams: {cluster_name: w, network_name: w}\n")
    (tmp_path / "staging.yaml").write_text(textwrap.dedent(text))
    bag = parse(monkeypatch, tmp_path)

    (error,) = bag.import_errors.values()
    assert f"{tmp_path / 'staging.yaml'}: {field}" in error
    # No DAG of the file is built, not even the good environment's; other DAG files are unaffected.
    assert sorted(bag.dags) == ["gke_inference_load_test"]
