"""The whole DAG tells someone (issue 15 §1): a run whose wrong-model check fails is mailed to a real
SMTP server (aiosmtpd) and posted to a real webhook receiver, both on loopback, and neither message
holds the Hugging Face token or the webhook's token."""

from __future__ import annotations

import base64
import email
import html
import json
import logging
import os
import secrets
from urllib.parse import quote

import pytest

from gke_inference import manifests, notifications
from sandbox.testing import unique_name
from tests.conftest import parsed_dag
from tests.plugins.test_notifications import (  # noqa: F401 (the receivers are fixtures)
    BASE_URL,
    SMTP_PASSWORD,
    WEBHOOK_TOKEN,
    smtp_inbox,
    targets,
    webhook_inbox,
)

# A whole run (~30 s): the slow lane (`make test-slow`, CI); the notifier tests cover the rest at task level.
pytestmark = [pytest.mark.dag, pytest.mark.slow]
DAG_ID = "gke_inference_gateway"
FAILING_TASK = "body_routing.check_wrong_model_rejected"
# Without the model-only route (tutorial 5.1) the catch-all route of 4.2 stays: the wrong model
# reaches vLLM, which answers its own 404, and the check fails once its propagation window is over.
SKIP_THE_MODEL_ONLY_ROUTE = r"body_routing\.apply_body_routing_route"


@pytest.fixture
def hf_canary(sandbox) -> str:
    """A Hugging Face token the twin's Hub accepts (tests/resilience/stack/test_secrets.py)."""
    canary = f"hf_canary_{secrets.token_hex(12)}/{secrets.token_hex(4)}+"
    sandbox.run(sandbox.sandbox.hub.add_token, canary)
    return canary


@pytest.fixture
def notifying_dag(targets, hf_canary, sandbox, monkeypatch):  # noqa: F811 (targets is the imported fixture)
    """The DAG parsed with both targets in the environment (the notifiers are built at parse), its
    huggingface_default connection holding the canary (read at run time; parsed_dag restores it)."""
    monkeypatch.setenv(notifications.ON_SUCCESS_ENV, "true")
    for dag in parsed_dag(sandbox):
        connection = json.loads(os.environ["AIRFLOW_CONN_HUGGINGFACE_DEFAULT"])
        os.environ["AIRFLOW_CONN_HUGGINGFACE_DEFAULT"] = json.dumps({**connection, "password": hf_canary})
        yield dag


def environment() -> dict:
    return {
        "network_name": unique_name("nt-vpc"),
        "subnet_name": unique_name("nt-subnet"),
        "proxy_subnet_name": unique_name("nt-proxy"),
        "cluster_name": unique_name("nt"),
        "gateway_port": 8080,
    }


def hf_token_in_cluster(sandbox, cluster_name: str) -> str:
    key = f"projects/{sandbox.info['project_id']}/locations/us-central1/clusters/{cluster_name}"
    store = sandbox.sandbox.clusters[key].store
    secret = sandbox.run(store.get, "v1", "Secret", "default", manifests.NAMES["hf_secret"])
    return base64.b64decode(secret["data"][manifests.NAMES["hf_secret_key"]]).decode()


def mail_text(raw: bytes) -> tuple[email.message.Message, str]:
    mail = email.message_from_bytes(raw)
    parts = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/html"]
    return mail, html.unescape("".join(parts))


def assert_names_the_failure(text: str, run_id: str) -> None:
    assert f"DAG run: {DAG_ID} / {run_id}" in text
    assert f"Failed task: {FAILING_TASK} (try 1)" in text
    assert "Tutorial step: Tutorial 5.1 step 3" in text
    error = next(line for line in text.splitlines() if line.startswith("Error: "))
    assert (
        error.startswith("Error: AirflowFailException: ") and "body-based routing is not in effect" in error
    )
    assert f"Log: {BASE_URL}/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/{FAILING_TASK}?try_number=1" in text


def test_a_failed_run_is_mailed_and_posted_without_any_token(
    notifying_dag,
    targets,  # noqa: F811
    hf_canary,
    sandbox,
    clean_faults,
    caplog,
):
    from airflow.sdk.definitions.deadline import DeadlineReference

    inbox, posts = targets
    # the run-level wiring: a deadline counted from when a run is queued (it fires in
    # tests/plugins/test_notifications_deadline.py; DAG.test's run is never queued), and the
    # scheduled-success announcement (this run fails: it must not send one)
    assert [alert.reference for alert in notifying_dag.deadline] == [DeadlineReference.DAGRUN_QUEUED_AT]
    assert len(notifying_dag.on_success_callback) == 1
    notifying_dag.get_task(FAILING_TASK).route_propagation_window = 1
    with caplog.at_level(logging.INFO):
        run = notifying_dag.test(run_conf=environment(), mark_success_pattern=SKIP_THE_MODEL_ONLY_ROUTE)

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed", states
    assert [task for task, state in states.items() if state == "failed"] == [FAILING_TASK]
    # the canary did reach the cluster, so its absence from the messages means something
    assert hf_token_in_cluster(sandbox, run.conf["cluster_name"]) == hf_canary

    assert len(inbox.mails) == 1, [mail_text(m)[0]["Subject"] for m in inbox.mails]
    mail, text = mail_text(inbox.mails[0])
    assert mail["Subject"] == f"[{DAG_ID}] {FAILING_TASK} failed in run {run.run_id}"
    assert_names_the_failure(text, run.run_id)

    assert len(posts) == 1
    path, payload = posts[0]
    assert path == f"/services/{WEBHOOK_TOKEN}"  # the webhook's token travels only as its URL's path
    assert_names_the_failure(json.loads(payload)["text"], run.run_id)

    # the mail as sent (headers; its body is base64) and as read, the webhook's payload, the log
    for received in (inbox.mails[0].decode(), text, payload.decode(), caplog.text):
        for token in (hf_canary, WEBHOOK_TOKEN, SMTP_PASSWORD):
            assert token not in received and quote(token, safe="") not in received
