"""The Hugging Face token reaches the cluster's Secret and nowhere else.

The stack's huggingface_default connection carries a canary token. After a full build, the canary
is in the sandbox cluster's Secret (so the search below cannot pass by accident), and in none of:
the task and component logs, the metadata DB (XComs, rendered template fields, run confs, audit
log), the rendered fields the REST API serves, or any path or query the sandbox was sent.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gke_inference import manifests
from tests.resilience.stack.conftest import DAG_ID, environment_names

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

SECRET_TASK = "model_server.create_hf_secret"


@pytest.fixture(scope="module")
def built_run(airflow_api) -> dict:
    """A successful build on the stack: the restart test's run if it happened, else a new one."""
    runs = airflow_api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns", state="success", limit=100)["dag_runs"]
    for run in runs:
        if airflow_api.task_states(run["dag_run_id"]).get(SECRET_TASK) == "success":
            return run
    run_id = airflow_api.trigger_ok(environment_names("f2-secrets"))
    assert airflow_api.wait_finished(run_id, timeout=300) == "success", airflow_api.task_states(run_id)
    return airflow_api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_the_canary_reached_the_clusters_secret(built_run, sandbox, hf_canary):
    cluster_name = built_run["conf"].get("cluster_name", "inference-gateway-lab")
    key = f"projects/{sandbox.info['project_id']}/locations/us-central1/clusters/{cluster_name}"
    store = sandbox.sandbox.clusters[key].store
    secret = sandbox.run(store.get, "v1", "Secret", "default", manifests.NAMES["hf_secret"])
    token = base64.b64decode(secret["data"][manifests.NAMES["hf_secret_key"]]).decode()
    assert token == hf_canary


def test_no_log_file_and_no_metadata_row_holds_the_canary(built_run, airflow_stack, hf_canary):
    home = airflow_stack.home
    assert (home / "logs" / f"dag_id={DAG_ID}").is_dir(), "the task logs are where the search expects"
    # The logs tree (task and component logs) and the SQLite DB with its journal files, byte for byte.
    assert files_containing(home, hf_canary.encode()) == []


def test_the_rendered_fields_and_xcoms_the_api_serves_hold_no_canary(built_run, airflow_api, hf_canary):
    run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{built_run['dag_run_id']}"
    served = []
    for ti in airflow_api.task_instances(built_run["dag_run_id"]):
        served.append(json.dumps(ti.get("rendered_fields")))
        entries = airflow_api.get_json(f"{run_path}/taskInstances/{ti['task_id']}/xcomEntries")
        for entry in entries["xcom_entries"]:
            path = f"{run_path}/taskInstances/{ti['task_id']}/xcomEntries/{entry['key']}"
            served.append(json.dumps(airflow_api.get_json(path, stringify=True)))
    assert any("cluster_name" in text for text in served), "rendered fields were served"
    assert [text for text in served if hf_canary in text] == []


def test_the_sandbox_was_sent_the_canary_in_no_path_or_query(built_run, sandbox, hf_canary):
    requests = sandbox.requests()
    assert any(entry["api"] == "kube" and "/secrets" in entry["path"] for entry in requests)
    assert [entry for entry in requests if hf_canary in json.dumps(entry)] == []


def test_the_sandbox_credentials_given_to_airflow_are_not_logged(built_run, airflow_stack, sandbox):
    credentials = json.loads(Path(sandbox.info["key_path"]).read_text())
    for secret in (credentials["private_key_id"], sandbox.info["access_token"]):
        assert files_containing(airflow_stack.home / "logs", secret.encode()) == []
