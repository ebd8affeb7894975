"""The Hugging Face token reaches the cluster's Secret and nowhere else.

The stack's huggingface_default connection carries a canary token. After a full build, the canary
is in the sandbox cluster's Secret (so the search below cannot pass by accident), and in none of:
the task and component logs, the metadata DB (XComs, rendered template fields, run confs, audit
log), the rendered fields and XComs the REST API serves, any path or query the sandbox was sent,
any other object the twin's Kubernetes API servers hold or held (every cluster, every namespace,
every stored version), or the twin's GCP state. Each search looks for the token as plaintext, in
base64 (how a Secret's `data` and many encoders carry it, at any of the three byte alignments) and
URL-encoded (how Airflow writes a connection's password into a URI).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from gke_inference import manifests
from tests.resilience.stack.conftest import DAG_ID, environment_names

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

SECRET_TASK = "model_server.create_hf_secret"


@pytest.fixture(scope="module")
def built_run(airflow_api) -> dict:
    """A successful build on the stack: the restart test's run if it happened, else a new one."""
    runs = airflow_api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns", state="success", limit=100)["dag_runs"]
    for run in runs:
        if airflow_api.task_states(run["dag_run_id"]).get(SECRET_TASK) == "success":
            return run
    run_id = airflow_api.trigger_ok(environment_names("f2-secrets"))
    assert airflow_api.wait_finished(run_id, timeout=480) == "success", airflow_api.task_states(run_id)
    return airflow_api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")


def canary_forms(token: str) -> dict[str, bytes]:
    """The token as plaintext, URL-encoded and base64. Inside a longer base64 text the token's
    encoding depends on its offset mod 3, so each alignment's stable middle part is searched."""
    raw = token.encode()
    forms = {"plaintext": raw, "url-encoded": quote(token, safe="").encode()}
    assert forms["url-encoded"] != raw, "the canary has characters a URL must encode"
    forms["base64"] = base64.b64encode(raw)
    for offset in (0, 1, 2):
        encoded = base64.b64encode(b"\0" * offset + raw)
        forms[f"base64 at offset {offset}"] = encoded[4 if offset else 0 : -4]
    return forms


def leaks(text: bytes, token: str) -> list[str]:
    """The forms of the token that occur in text."""
    return [form for form, needle in canary_forms(token).items() if needle in text]


def files_containing(root: Path, token: str) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and (forms := leaks(path.read_bytes(), token)):
            found[str(path)] = forms
    return found


def test_the_search_finds_every_form_of_the_canary(hf_canary):
    """The needles are right: each form is found in text that holds only that form."""
    texts = {
        "plaintext": f"log line {hf_canary} end",
        "url-encoded": f"huggingface://:{quote(hf_canary, safe='')}@host",
        "base64": json.dumps({"data": {"token": base64.b64encode(hf_canary.encode()).decode()}}),
    }
    for prefix in ("", "a", "ab"):
        texts[f"base64 {prefix!r}"] = base64.b64encode(
            f"{prefix}{{'token': '{hf_canary}'}}".encode()
        ).decode()
    assert {name: bool(leaks(text.encode(), hf_canary)) for name, text in texts.items()} == dict.fromkeys(
        texts, True
    )
    assert leaks(b"hf_canary_ and other text", hf_canary) == []


def built_cluster_key(built_run, sandbox) -> str:
    cluster_name = built_run["conf"].get("cluster_name", "inference-gateway-lab")
    return f"projects/{sandbox.info['project_id']}/locations/us-central1/clusters/{cluster_name}"


def test_the_canary_reached_the_clusters_secret(built_run, sandbox, hf_canary):
    store = sandbox.sandbox.clusters[built_cluster_key(built_run, sandbox)].store
    secret = sandbox.run(store.get, "v1", "Secret", "default", manifests.NAMES["hf_secret"])
    token = base64.b64decode(secret["data"][manifests.NAMES["hf_secret_key"]]).decode()
    assert token == hf_canary


def test_no_log_file_and_no_metadata_row_holds_the_canary(built_run, airflow_stack, hf_canary):
    home = airflow_stack.home
    assert (home / "logs" / f"dag_id={DAG_ID}").is_dir(), "the task logs are where the search expects"
    # The logs tree (task and component logs) and the SQLite DB with its journal files, byte for byte.
    assert files_containing(home, hf_canary) == {}


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
    assert [(text, forms) for text in served if (forms := leaks(text.encode(), hf_canary))] == []


def test_the_sandbox_was_sent_the_canary_in_no_path_or_query(built_run, sandbox, hf_canary):
    requests = sandbox.requests()
    assert any(entry["api"] == "kube" and "/secrets" in entry["path"] for entry in requests)
    assert [entry for entry in requests if leaks(json.dumps(entry).encode(), hf_canary)] == []


def stored_objects(sandbox) -> list[tuple[str, dict]]:
    """Every object every twin cluster's API server holds, and every version it stored before (the
    watch history: objects since replaced or deleted), with the cluster each came from."""

    def collect() -> list[tuple[str, dict]]:
        objects = []
        for cluster_key, cluster in sandbox.sandbox.clusters.items():
            store = cluster.store
            objects += [(cluster_key, obj) for obj in store._objects.values()]
            objects += [(cluster_key, obj) for _, _, obj in store._history]
        return copy.deepcopy(objects)

    return sandbox.run(collect)


def is_the_hf_secret(obj: dict) -> bool:
    metadata = obj.get("metadata") or {}
    return obj.get("kind") == "Secret" and metadata.get("name") == manifests.NAMES["hf_secret"]


def test_no_other_object_in_the_twins_clusters_holds_the_canary(built_run, sandbox, hf_canary):
    """What the DAG sent the Kubernetes API servers lands in their stores: a token in a Deployment's
    env, an annotation or a ConfigMap would be here, in any namespace."""
    objects = stored_objects(sandbox)
    # Other tests of the session build clusters with their own canaries; this run's Secret holds ours.
    built = built_cluster_key(built_run, sandbox)
    secrets = [obj for cluster, obj in objects if cluster == built and is_the_hf_secret(obj)]
    assert secrets and all(leaks(json.dumps(obj).encode(), hf_canary) for obj in secrets), "search works"
    leaked = [
        (
            cluster,
            obj.get("kind"),
            (obj.get("metadata") or {}).get("namespace"),
            obj["metadata"]["name"],
            forms,
        )
        for cluster, obj in objects
        if not is_the_hf_secret(obj) and (forms := leaks(json.dumps(obj).encode(), hf_canary))
    ]
    assert len(objects) > 100 and leaked == []


def test_the_twins_gcp_state_holds_no_canary(built_run, sandbox, hf_canary):
    """Networks, subnetworks, clusters (labels, descriptions) and load balancers the DAG made."""
    gcp = sandbox.sandbox.gcp
    collections = [gcp.networks, gcp.subnetworks, gcp.clusters, *gcp.load_balancing.values()]
    state = sandbox.run(lambda: json.dumps([list(c.values()) for c in collections], default=str).encode())
    assert built_run["conf"].get("cluster_name", "inference-gateway-lab").encode() in state
    assert leaks(state, hf_canary) == []


def test_the_sandbox_credentials_given_to_airflow_are_not_logged(built_run, airflow_stack, sandbox):
    credentials = json.loads(Path(sandbox.info["key_path"]).read_text())
    for secret in (credentials["private_key_id"], sandbox.info["access_token"]):
        assert [
            path
            for path in (airflow_stack.home / "logs").rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()
        ] == []
