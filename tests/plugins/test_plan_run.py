"""plan_run, the DAG's first task, refuses before anything exists: unknown conf keys, integers
written as decimals, what cannot be built, and missing connections (final: no retry).

Every refusal is counted in the twin's request log: no writing request (POST, PUT, PATCH, DELETE)
on any API after it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.operators.plan import PlanRunOperator
from gke_inference.params import build_params

WRITING = {"POST", "PUT", "PATCH", "DELETE"}


def defaults() -> dict:
    return {name: param.value for name, param in build_params().items()}


class FakeTi:
    def __init__(self) -> None:
        self.pushed: dict = {}

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


def run_plan(conf: dict, run_type: str = "manual") -> dict:
    """PlanRunOperator.execute as a run with this conf would: params are the defaults merged with
    the conf (unknown keys included, as Airflow 3.3 merges them), dag_run.conf is the raw conf."""
    context = {
        "params": {**defaults(), **conf},
        "dag_run": SimpleNamespace(conf=conf, run_type=run_type),
        "ti": FakeTi(),
    }
    return PlanRunOperator(task_id="plan_run").execute(context)


def writes_since(sandbox, since: int) -> list[str]:
    return [f"{e['method']} {e['path']}" for e in sandbox.requests()[since:] if e["method"] in WRITING]


@pytest.fixture
def connections(sandbox, monkeypatch):
    for conn_id, uri in sandbox.info["airflow_connections"].items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    return monkeypatch


@pytest.fixture
def refused(sandbox, connections):
    """``refused(conf)``: the AirflowFailException's message; asserts the twin saw no write."""

    def run(conf: dict, run_type: str = "manual") -> str:
        since = len(sandbox.requests())
        with pytest.raises(AirflowFailException) as error:
            run_plan(conf, run_type)
        assert writes_since(sandbox, since) == []
        return str(error.value)

    return run


@pytest.mark.parametrize(
    "conf, message",
    [
        (
            {"mode": "teardown", "Cluster_name": "staging-cl"},
            "unknown param 'Cluster_name'; did you mean 'cluster_name'?",
        ),
        ({"replica": 2}, "unknown param 'replica'; did you mean 'replicas'?"),
        ({"gpu-type": "nvidia-l4"}, "did you mean 'gpu_type'?"),
        ({"namespce": "default"}, "did you mean 'namespace'?"),
        ({"xyzzy": 1}, "unknown param 'xyzzy'; the params are: "),
    ],
)
def test_unknown_conf_keys_are_refused_naming_the_nearest_param(refused, conf, message):
    assert message in refused(conf)


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"replicas": 2.0}, "replicas: 2.0 is written as a decimal; write it as a whole number (2)"),
        ({"gateway_port": 8080.0}, "gateway_port: 8080.0 is written as a decimal"),
        ({"gpu_count": 1.0}, "gpu_count: 1.0"),
        ({"pods_timeout": 900.0}, "pods_timeout: 900.0"),
        ({"max_tokens": 100.0, "max_model_len": 8192.0}, "max_model_len: 8192.0"),
    ],
)
def test_integers_written_as_decimals_are_refused_at_the_door(refused, conf, message):
    assert message in refused(conf)


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"reservation_name": None, "flex_start": False, "spot": False}, "no GPU capacity source"),
        ({"reservation_name": "", "flex_start": False, "spot": False}, "no GPU capacity source"),
        ({"namespace": "inference"}, "'inference' does not exist on a new cluster"),
        ({"namespace": "kube-system"}, "Use 'default'"),
        ({"pool_name": "bbr-healthcheck"}, "two objects named HealthCheckPolicy/default/bbr-healthcheck"),
        (
            {"model_app_label": "vllm-llama-pool-epp"},
            "two objects named Deployment/default/vllm-llama-pool-epp",
        ),
        ({"model_app_label": "body-based-router"}, "the body-based router's app label"),
        ({"pool_name": "vllm-llama3-1-8b-instruct"}, "pool_name must differ from model_app_label"),
        ({"compute_class_name": "autopilot"}, "ComputeClass GKE Autopilot builds in"),
        ({"compute_class_name": "autopilot-spot"}, "builds in"),
        ({"max_tokens": 4096, "max_model_len": 4096}, "leaves no room for the prompt"),
    ],
)
def test_what_cannot_be_built_is_refused_before_the_first_create(refused, conf, message):
    assert message in refused(conf)


def test_each_capacity_source_alone_is_enough(connections):
    for source in ({"reservation_name": "my-res"}, {"flex_start": True}, {"spot": True}):
        conf = {"reservation_name": None, "flex_start": False, "spot": False, **source}
        assert run_plan(conf)["mode"] == "ensure"


def test_the_issue_example_tears_down_nothing(refused):
    """{"mode": "teardown", "Cluster_name": ...} used to tear down the default environment."""
    message = refused({"mode": "teardown", "Cluster_name": "staging-cl"})
    assert "nothing was created" in message


def test_a_missing_gcp_connection_is_final(refused, connections):
    connections.delenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT")
    assert "The GCP connection 'google_cloud_default' does not exist" in refused({})


@pytest.mark.parametrize("mode", ["ensure", "rebuild"])
def test_a_missing_hugging_face_connection_is_final_when_building(refused, connections, mode):
    connections.delenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT")
    assert "The Hugging Face connection 'huggingface_default' does not exist" in refused({"mode": mode})


def test_teardown_needs_no_hugging_face_connection(connections):
    connections.delenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT")
    assert run_plan({"mode": "teardown", "project_id": "some-project"})["mode"] == "teardown"


@pytest.mark.parametrize("password", ["", "   ", None])
def test_a_hugging_face_connection_without_a_password_is_refused(refused, connections, password):
    connection: dict = {"conn_type": "generic"}
    if password is not None:
        connection["password"] = password
    connections.setenv("AIRFLOW_CONN_HF_EMPTY", json.dumps(connection))
    assert "The Hugging Face connection 'hf_empty' has no password" in refused({"hf_conn_id": "hf_empty"})


@pytest.mark.parametrize("with_key", [True, False])
def test_a_run_without_any_project_fails_naming_it(sandbox, refused, connections, tmp_path, with_key):
    """Neither the param nor the connection (its extra or its key file) names a project."""
    extra = {}
    if with_key:
        key = json.loads(open(sandbox.info["key_path"]).read())
        key.pop("project_id", None)
        (tmp_path / "key.json").write_text(json.dumps(key))
        extra["key_path"] = str(tmp_path / "key.json")
    connections.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    connections.setenv(
        "AIRFLOW_CONN_GCP_NO_PROJECT", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    message = refused({"gcp_conn_id": "gcp_no_project", "project_id": None})
    assert "No project: the param project_id is empty and connection 'gcp_no_project'" in message


def test_good_input_plans_the_run(connections):
    plan = run_plan({"project_id": "my-project-1"})
    assert (plan["project_id"], plan["mode"], plan["requested_mode"]) == ("my-project-1", "ensure", "ensure")
    assert run_plan({"mode": "ensure"}, run_type="scheduled")["mode"] == "rebuild"


def test_the_plan_resolves_the_schedule_mode_and_the_failure_policy_by_run_type(connections):
    context = {
        "params": {**defaults(), "project_id": "my-project-1"},
        "dag_run": SimpleNamespace(conf={}, run_type="scheduled"),
        "ti": FakeTi(),
    }
    scheduled = PlanRunOperator(task_id="plan_run", schedule_mode="ensure").execute(context)
    assert (scheduled["mode"], scheduled["on_failure"]) == ("ensure", "teardown")
    manual = run_plan({"project_id": "my-project-1"})
    assert (manual["mode"], manual["on_failure"]) == ("ensure", "keep")
    asked = run_plan({"project_id": "my-project-1", "on_failure": "teardown"})
    assert asked["on_failure"] == "teardown"


def test_unknown_keys_and_decimals_are_listed_together(refused):
    message = refused({"mode": "teardown", "Cluster_name": "staging-cl", "gateway_port": 8080.0})
    assert "unknown param 'Cluster_name'" in message and "gateway_port: 8080.0" in message


def test_an_unknown_key_seen_only_in_the_params_is_refused(sandbox, connections):
    """In a real run the unknown key reached plan_run through the params, not dag_run.conf
    (measured on the stack: a check of dag_run.conf alone let it through)."""
    since = len(sandbox.requests())
    context = {
        "params": {**defaults(), "mode": "teardown", "Cluster_name": "staging-cl"},
        "dag_run": SimpleNamespace(conf=None, run_type="manual"),
        "ti": FakeTi(),
    }
    with pytest.raises(AirflowFailException, match="did you mean 'cluster_name'"):
        PlanRunOperator(task_id="plan_run").execute(context)
    assert writes_since(sandbox, since) == []


def test_the_plan_holds_every_declared_param_typed_and_the_project_resolved(sandbox, connections):
    """Later tasks take plan["x"] as they are: no task parses a rendered string again."""
    plan = run_plan({"mode": "ensure", "project_id": None}, run_type="scheduled")
    assert set(defaults()) | {"requested_mode"} == set(plan)
    assert plan["project_id"]  # from the GCP connection, since the param is empty
    assert (plan["mode"], plan["requested_mode"]) == ("rebuild", "ensure")
    assert type(plan["gateway_port"]) is int and type(plan["pods_timeout"]) is int
    assert type(plan["use_existing_network"]) is bool
