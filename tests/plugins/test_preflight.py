"""The pre-flight against the session sandbox: it refuses what cannot be built, and writes nothing.

Every refusal is counted in the twin's request log: after it, the log holds reads only (no POST,
PUT, PATCH or DELETE on any API), and the Hugging Face token is in neither the error nor the logs.
"""

from __future__ import annotations

import json
import logging
from unittest.mock import ANY

import pytest
from airflow.sdk.exceptions import AirflowFailException
from huggingface_hub.errors import HfHubHTTPError

from gke_inference.hooks.accelerators import AcceleratorTypesHook
from gke_inference.operators.preflight import PreflightOperator
from tests.plugins.conftest import GCP_CONN_ID

GATED_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
HF_CONN = "hf_preflight"


@pytest.fixture
def hf_connection(sandbox, monkeypatch):
    """``set_token(token)`` puts connection hf_preflight, aimed at the twin's Hub, in the environment."""

    def set_token(token: str | None, endpoint: str | None = sandbox.info["hf_endpoint"]) -> str:
        connection: dict = {"conn_type": "generic", "extra": {"endpoint": endpoint} if endpoint else {}}
        if token is not None:
            connection["password"] = token
        monkeypatch.setenv(f"AIRFLOW_CONN_{HF_CONN.upper()}", json.dumps(connection))
        return HF_CONN

    set_token(sandbox.sandbox.hf_token)
    return set_token


def preflight(project: str, **overrides) -> PreflightOperator:
    arguments = {
        "task_id": "preflight",
        "project_id": project,
        "gcp_conn_id": GCP_CONN_ID,
        "mode": "ensure",
        "region": "us-central1",
        "gpu_type": "nvidia-l4",
        "gpu_count": 1,
        "model_name": GATED_MODEL,
        "hf_conn_id": HF_CONN,
        **overrides,
    }
    return PreflightOperator(**arguments)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail a test whose pre-flight opens a connection anywhere but the loopback twin (recorded,
    then asserted: huggingface_hub swallows errors of its side requests)."""
    import socket

    from huggingface_hub.utils import _detect_agent

    monkeypatch.setattr(_detect_agent, "_registry", None)  # as in a fresh worker process
    original, elsewhere = socket.create_connection, []

    def create_connection(address, *args, **kwargs):
        host = str(address[0])
        if host != "localhost" and not _is_loopback_ip(host):
            elsewhere.append(host)
            raise OSError(f"no network beyond loopback in tests: {host}")
        return original(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield
    assert elsewhere == [], f"the pre-flight connected to {elsewhere}, not only to the twin"


def _is_loopback_ip(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, such as huggingface.co
        return False


@pytest.fixture
def requests_since(sandbox):
    """``requests_since()``: the twin's request log since the test began, as "METHOD api path"."""
    mark = len(sandbox.requests())
    return lambda: [f"{e['method']} {e['api']} {e['path']}" for e in sandbox.requests()[mark:]]


def writes(entries: list[str]) -> list[str]:
    return [entry for entry in entries if not entry.startswith("GET ")]


def refusal(operator: PreflightOperator, caplog) -> str:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({})
    return str(raised.value)


@pytest.fixture
def logs(caplog, capsys):
    """``logs()``: everything logged so far, by the standard loggers (caplog, from DEBUG) and by
    Airflow's task logger (which writes to stdout outside a task runner)."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def read() -> str:
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        return caplog.text + "".join(seen)

    return read


def test_the_default_run_passes_with_one_read_of_each_api(project, hf_connection, requests_since):
    result = preflight(project).execute({})
    assert result == {
        "checked": True,
        "gpu_zones": ["us-central1-a", "us-central1-b", "us-central1-c"],
        "hf": "ok",
    }
    assert requests_since() == [
        f"GET compute /compute/v1/projects/{project}/aggregated/acceleratorTypes",
        f"GET hub /api/models/{GATED_MODEL}/auth-check",
    ]


def test_a_region_without_the_gpu_type_is_refused_naming_where_it_exists(
    project, hf_connection, requests_since, caplog
):
    message = refusal(preflight(project, region="southamerica-west1"), caplog)
    assert message.startswith("No zone of region southamerica-west1 offers GPU type nvidia-l4")
    assert "europe-west4, us-central1" in message
    message = refusal(preflight(project, region="us-west1", gpu_type="nvidia-a100-80gb"), caplog)
    assert "No zone of region us-west1 offers GPU type nvidia-a100-80gb" in message
    assert "regions that offer it: us-central1" in message
    assert writes(requests_since()) == [] and requests_since()


def test_more_gpus_than_one_machine_takes_are_refused(project, hf_connection, requests_since, caplog):
    message = refusal(preflight(project, gpu_count=16), caplog)
    assert "gpu_count 16" in message and "maximumCardsPerInstance 8" in message
    assert "us-central1-a, us-central1-b, us-central1-c" in message
    preflight(project, gpu_type="nvidia-tesla-a100", gpu_count=16).execute({})  # A100 40GB: 16 fit
    assert writes(requests_since()) == []


def test_a_token_the_hub_refuses_fails_naming_the_connection_not_the_token(
    project, hf_connection, requests_since, caplog, logs
):
    token = "hf_this_token_was_revoked_0123456789"
    hf_connection(token)
    message = refusal(preflight(project), caplog)
    assert f"connection {HF_CONN!r}" in message and "HTTP 401" in message
    assert "Invalid credentials in Authorization header" in message
    assert "PreflightOperator" in logs()  # the task logger's lines are in what is searched
    assert token not in message and token not in logs()
    assert writes(requests_since()) == []
    assert requests_since()[-1] == f"GET hub /api/models/{GATED_MODEL}/auth-check"


def test_a_token_without_access_to_the_gated_model_is_told_to_request_it(
    sandbox, project, hf_connection, requests_since, caplog, logs
):
    token = sandbox.info["hf_token_without_access"]
    hf_connection(token)
    message = refusal(preflight(project), caplog)
    assert f"no access to the gated model {GATED_MODEL!r}" in message and "HTTP 403" in message
    assert f"request access on https://huggingface.co/{GATED_MODEL}" in message
    assert token not in message and token not in logs()
    assert writes(requests_since()) == []
    # The same token may read an open model: the refusal is about the gate, not the token.
    preflight(project, model_name="Qwen/Qwen2.5-7B-Instruct").execute({})


def test_an_unknown_model_is_refused(project, hf_connection, caplog):
    message = refusal(preflight(project, model_name="meta-llama/Llama-9-Nonexistent"), caplog)
    assert "no model 'meta-llama/Llama-9-Nonexistent'" in message and "HTTP 404" in message


@pytest.mark.parametrize("token", [None, "", "   "], ids=["no password", "empty", "blank"])
def test_a_connection_without_a_token_fails_at_once_without_asking_the_hub(
    project, hf_connection, requests_since, caplog, token
):
    hf_connection(token)
    message = refusal(preflight(project), caplog)
    assert message.startswith(f"Airflow connection {HF_CONN!r} has no password")
    assert not any(" hub " in entry for entry in requests_since())


def test_a_missing_connection_fails_at_once_naming_it(project, hf_connection, requests_since, caplog):
    message = refusal(preflight(project, hf_conn_id="no_such_hf_connection"), caplog)
    assert message.startswith("Airflow connection 'no_such_hf_connection' does not exist")
    assert writes(requests_since()) == []


@pytest.mark.parametrize(
    "fault", [{"status": 503}, {"status": 429}, {"drop": True}], ids=["503", "429", "connection reset"]
)
def test_an_unreachable_hub_raises_for_airflow_to_retry(sandbox, project, hf_connection, clean_faults, fault):
    sandbox.faults_add(api="hub", count=1, **fault)
    with pytest.raises(Exception) as raised:
        preflight(project).execute({})
    assert not isinstance(raised.value, AirflowFailException)
    if "status" in fault:
        assert isinstance(raised.value, HfHubHTTPError)
    preflight(project).execute({})  # the retry passes


def test_transient_compute_errors_are_retried_by_the_hook(
    sandbox, project, hf_connection, clean_faults, requests_since
):
    sandbox.faults_add(api="compute", path="aggregated/acceleratorTypes", status=503, count=1)
    preflight(project).execute({})
    statuses = [
        e["status"] for e in sandbox.requests("compute") if e["path"].endswith("aggregated/acceleratorTypes")
    ]
    assert statuses[-2:] == [503, 200]


def test_teardown_checks_nothing(project, hf_connection, requests_since):
    hf_connection("hf_a_token_that_would_be_refused")
    assert preflight(project, mode="teardown", region="southamerica-west1").execute({}) == {"checked": False}
    assert requests_since() == []


def test_rebuild_checks_like_ensure(project, hf_connection, caplog):
    message = refusal(preflight(project, mode="rebuild", region="southamerica-west1"), caplog)
    assert "No zone of region southamerica-west1" in message


def test_a_project_with_compute_disabled_skips_the_gpu_check_but_not_the_token(
    new_project, hf_connection, requests_since, logs
):
    result = preflight(new_project, region="southamerica-west1").execute({})
    assert result == {"checked": True, "gpu_zones": None, "hf": "ok"}
    assert f"Compute Engine API is disabled in project {new_project}" in logs()
    hf_connection("hf_revoked_token_in_new_project")
    with pytest.raises(AirflowFailException, match="HTTP 401"):
        preflight(new_project).execute({})
    assert writes(requests_since()) == []


def test_the_hook_honours_the_connections_api_endpoint(project, gcp_connection, sandbox, requests_since):
    offer = AcceleratorTypesHook(gcp_conn_id=GCP_CONN_ID).availability(
        "nvidia-h100-80gb", "europe-west3", project
    )
    assert offer.zones_in_region == ["europe-west3-c"]
    assert offer.max_cards_per_instance == 8
    assert "us-central1" in offer.regions_elsewhere
    assert requests_since() == [f"GET compute /compute/v1/projects/{project}/aggregated/acceleratorTypes"]


def test_every_task_that_creates_or_deletes_runs_after_the_preflight(dag):
    preflight_task = dag.get_task("preflight")
    assert preflight_task.upstream_task_ids == {"plan_run"}
    after = preflight_task.get_flat_relative_ids(upstream=False)
    assert after == {task.task_id for task in dag.tasks} - {"plan_run", "preflight"}
    assert preflight_task.retries >= 2


def _enable_compute(sandbox, project_id: str) -> None:
    sandbox.gcp.projects[project_id].enable("compute.googleapis.com")


def test_the_check_after_enable_apis_asks_again_and_refuses(new_project, sandbox, hf_connection, caplog):
    """A new project skips the GPU question in `preflight`; `check_gpu_zones` must not skip it."""
    after_enable = {"task_id": "check_gpu_zones", "checks": ["gpus"], "compute_may_be_disabled": False}
    with pytest.raises(Exception, match="(?i)compute"):
        preflight(new_project, **after_enable).execute({})
    sandbox.run(_enable_compute, sandbox.sandbox, new_project)
    message = refusal(preflight(new_project, region="southamerica-west1", **after_enable), caplog)
    assert "No zone of region southamerica-west1" in message
    assert preflight(new_project, **after_enable).execute({}) == {"checked": True, "gpu_zones": ANY}


def test_the_gpu_question_is_asked_again_before_the_first_create(dag):
    check = dag.get_task("project_network.check_gpu_zones")
    # plan_run too: its arguments are the plan's values (XComArgs), which make it an upstream.
    assert check.upstream_task_ids == {"project_network.enable_apis", "plan_run"}
    # and the cost guard's gate, which waits for every build task (tests/dags/test_dag_cost_guard.py)
    assert check.downstream_task_ids == {"project_network.ensure_network", "cleanup.start"}
    assert check.checks == ("gpus",) and check.compute_may_be_disabled is False
