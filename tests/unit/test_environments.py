"""Environment definitions: loaded from YAML, checked field by field, refused when they collide."""

from __future__ import annotations

import textwrap

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from gke_inference import environments
from gke_inference.environments import EnvironmentDefinitionError, dag_params, load
from gke_inference.notifications import NotifySettings


def write(directory, name: str, text: str):
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_one_file_may_hold_one_environment_or_several_in_file_order(tmp_path):
    write(
        tmp_path,
        "b.yaml",
        "name: staging\nschedule_mode: ensure\nparams: {cluster_name: staging, network_name: staging-vpc}\n",
    )
    write(
        tmp_path,
        "a.yml",
        """\
        environments:
          - name: weekly
            description: Does the recipe still build?
            schedule: "@weekly"
            params: {cluster_name: weekly, network_name: weekly-vpc, keep_for_hours: 1}
          - name: eu
            params: {region: europe-west4}
        """,
    )
    write(tmp_path, "notes.txt", "not a definition")

    found = load(tmp_path)

    assert [(env.name, env.dag_id) for env in found] == [
        ("weekly", "gke_inference_gateway__weekly"),
        ("eu", "gke_inference_gateway__eu"),
        ("staging", "gke_inference_gateway__staging"),
    ]
    weekly, eu, staging = found
    assert weekly.schedule == "@weekly" and weekly.params["keep_for_hours"] == 1
    assert weekly.description == "Does the recipe still build?"
    assert eu.schedule is None  # no schedule: manual runs only
    assert (staging.schedule_mode, eu.schedule_mode) == ("ensure", "rebuild")
    assert staging.source == tmp_path / "b.yaml"


def test_no_directory_or_empty_files_define_nothing(tmp_path):
    assert load(tmp_path / "missing") == []
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    assert load(tmp_path) == []


def test_an_unset_schedule_mode_follows_the_deployment(tmp_path, monkeypatch):
    monkeypatch.setenv("GKE_INFERENCE_SCHEDULE_MODE", "ensure")
    write(tmp_path, "e.yaml", "name: staging\n")
    assert load(tmp_path)[0].schedule_mode == "ensure"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: Staging\n", "name: 'Staging' is not a name"),
        ("name: a-very-long-environment-name-indeed\n", "is not a name"),
        ("params: {}\n", "name: None is not a name"),
        ("name: s\ncolour: blue\n", "colour: unknown field; the fields are: name, description"),
        ("name: s\nparams: {regoin: us-east1}\n", "params: unknown param 'regoin'; did you mean 'region'?"),
        ("name: s\nparams: [region]\n", "params: must be a mapping"),
        ("name: s\nparams: {region: mars-north1}\n", "params.region: 'mars-north1' is not one of"),
        ("name: s\nparams: {gpu_count: two}\n", "params.gpu_count: 'two' is not of type 'integer'"),
        ("name: s\nparams: {pods_range: 10.0.0.0/14}\n", "params: Invalid params"),
        ("name: s\nschedule: every day\n", "schedule: 'every day':"),
        ("name: s\nschedule: 7\n", "schedule: 7 is not a cron expression"),
        ("name: s\nschedule_mode: teardown\n", "schedule_mode: 'teardown'; use one of rebuild, ensure"),
        ("name: s\nnotify: {email: a@example.com}\n", "notify.email: unknown field"),
        ("name: s\nnotify: {email_to: [a@example.com]}\n", "notify.email_to: must be a string"),
        ("name: s\nnotify: {deadline_minutes: 0}\n", "notify.deadline_minutes: 0 is not a whole number"),
        ("name: s\nnotify: {on_scheduled_success: 'yes'}\n", "notify.on_scheduled_success: must be true"),
        ("environments: {name: s}\n", "environments: must be a list"),
        ("environments:\n  - name: a\n  - 3\n", "environments[1]: a definition must be a mapping"),
        ("environments:\n  - name: a\n  - name: b\n    zone: x\n", "environments[1].zone: unknown field"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_wrong_definition_names_its_file_and_field(tmp_path, text, message):
    path = write(tmp_path, "env.yaml", text)
    with pytest.raises(EnvironmentDefinitionError) as raised:
        load(tmp_path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("second", "what"),
    [
        ("name: a\nparams: {cluster_name: other, network_name: other-vpc}\n", "the name 'a'"),
        ("name: b\nparams: {network_name: other-vpc}\n", "cluster 'inference-gateway-lab' in us-central1"),
        ("name: b\nparams: {cluster_name: other}\n", "VPC 'inference-vpc'"),
    ],
)
def test_two_environments_may_not_share_a_name_a_cluster_or_a_vpc(tmp_path, second, what):
    write(tmp_path, "1.yaml", "name: a\n")
    write(tmp_path, "2.yaml", second)
    with pytest.raises(EnvironmentDefinitionError, match="as environment 'a'") as raised:
        load(tmp_path)
    assert what in str(raised.value) and str(tmp_path / "1.yaml") in str(raised.value)


def test_the_same_names_in_different_projects_do_not_collide(tmp_path):
    write(tmp_path, "1.yaml", "name: a\nparams: {project_id: project-one}\n")
    write(tmp_path, "2.yaml", "name: b\nparams: {project_id: project-two}\n")
    write(tmp_path, "3.yaml", "name: c\nparams: {region: europe-west4, network_name: eu-vpc}\n")
    assert [env.name for env in load(tmp_path)] == ["a", "b", "c"]


def test_an_environment_dag_has_its_overrides_as_defaults_and_its_identity_pinned(tmp_path):
    write(tmp_path, "e.yaml", "name: eu\nparams: {region: europe-west4, gpu_count: 2, cluster_name: eu}\n")
    params = dag_params(load(tmp_path)[0])

    assert params["region"].value == "europe-west4" and params["gpu_count"].value == 2
    # A manual run may change a setting, never which objects the environment is.
    assert params["gpu_count"].resolve(1) == 1
    for key, other in [
        ("region", "us-east1"),
        ("cluster_name", "staging"),
        ("network_name", "x"),
        ("project_id", "p-123456"),
    ]:
        with pytest.raises(ParamValidationError):
            params[key].resolve(other)
    assert "Fixed for environment eu" in params["region"].description
    assert params["region"].resolve() == "europe-west4"
    # The DAG of no environment keeps the plain params.
    assert "const" not in dag_params(environments.without_definition())["region"].schema


def test_notify_settings_replace_the_deployments(tmp_path, monkeypatch):
    monkeypatch.setenv("GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID", "deployment_hook")
    write(
        tmp_path,
        "e.yaml",
        "name: s\nnotify: {smtp_conn_id: smtp_ops, email_to: 'a@example.com, b@example.com', deadline_minutes: 90}\n",
    )
    write(tmp_path, "f.yaml", "name: t\nparams: {cluster_name: t, network_name: t}\n")
    own, inherited = load(tmp_path)
    assert own.notify == NotifySettings(
        smtp_conn_id="smtp_ops", email_to="a@example.com, b@example.com", deadline_minutes=90
    )
    assert own.notify.targets()["webhook_conn_id"] == ""
    assert inherited.notify is None  # the DAG then reads the deployment's variables


def test_the_directory_comes_from_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(environments.ENVIRONMENTS_DIR_ENV, raising=False)
    assert environments.environments_dir("/dags/environments").as_posix() == "/dags/environments"
    monkeypatch.setenv(environments.ENVIRONMENTS_DIR_ENV, str(tmp_path))
    assert environments.environments_dir("/dags/environments") == tmp_path
    # Set but wrong: an error, not the DAG of no definition and its weekly rebuild.
    monkeypatch.setenv(environments.ENVIRONMENTS_DIR_ENV, str(tmp_path / "typo"))
    with pytest.raises(
        EnvironmentDefinitionError, match="GKE_INFERENCE_ENVIRONMENTS_DIR is .*typo.*not a folder"
    ):
        environments.defined_or_default("/dags/environments")


def test_the_shipped_examples_are_valid_definitions():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "include" / "environments"
    found = {env.name: env for env in load(examples)}
    assert sorted(found) == ["staging", "weekly"]
    assert (found["weekly"].schedule_mode, found["staging"].schedule_mode) == ("rebuild", "ensure")
