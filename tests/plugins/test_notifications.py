"""Notifications (issue 15 §1) delivered to real receivers on loopback: an aiosmtpd SMTP server that
requires a login, and an HTTP server standing in for a Slack-compatible incoming webhook."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from gke_inference import notifications

SMTP_PASSWORD = "smtp-pw-7f3a91"
WEBHOOK_TOKEN = "T0001/B0002/webhook-tok-5c2e88"
BASE_URL = "http://airflow.test:8080"
DAG_ID = "notify_probe"
FAILING_TASK = "body_routing.check_wrong_model_rejected"
ERROR = "Gateway accepted model 'meta-llama/Llama-3.1-10B-Instruct' (HTTP 200)\nsecond line never sent"


class Inbox:
    def __init__(self) -> None:
        self.mails: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.mails.append(envelope.content)
        return "250 OK"


def check_login(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"airflow" and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port once started, so port 0 cannot be used
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_inbox():
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=check_login, auth_require_tls=False
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def webhook_inbox():
    posts: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's hook name)
            posts.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield posts, server.server_address[1]
    finally:
        server.shutdown()


@pytest.fixture
def targets(smtp_inbox, webhook_inbox, monkeypatch):
    """Both targets configured in the environment, as an operator would; returns the two inboxes."""
    inbox, smtp_port = smtp_inbox
    posts, http_port = webhook_inbox
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp_port,
        "login": "airflow",
        "password": SMTP_PASSWORD,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@test", "retry_limit": 1},
    }
    webhook = {
        "conn_type": "slackwebhook",
        "host": f"http://127.0.0.1:{http_port}/services",
        "password": WEBHOOK_TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_SMTP", json.dumps(smtp))
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_WEBHOOK", json.dumps(webhook))
    monkeypatch.setenv(notifications.SMTP_CONN_ENV, "notify_smtp")
    monkeypatch.setenv(notifications.EMAIL_TO_ENV, "platform@test")
    monkeypatch.setenv(notifications.WEBHOOK_CONN_ENV, "notify_webhook")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    return inbox, posts


@pytest.fixture
def probe_dags_folder(tmp_path, monkeypatch):
    """dag.test() writes the DAG through the dags-folder bundle (settings.DAGS_FOLDER, read at import):
    point both at a folder holding a file with the probe's DAG id (tests/resilience/conftest.py)."""
    from airflow import settings

    (tmp_path / "notify_probe.py").write_text(
        f'from airflow.sdk import DAG\n\ndag = DAG("{DAG_ID}", schedule=None)\n'
    )
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def run_failing_probe():
    """One dag.test() run of a DAG wired like the real one, whose wrong-model check fails."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, TaskGroup
    from airflow.sdk.exceptions import AirflowFailException

    def wrong_model_accepted():
        raise AirflowFailException(ERROR)

    with DAG(
        DAG_ID,
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1),
        default_args={"retries": 0, **notifications.task_callbacks()},
        **notifications.dag_callbacks(),
    ) as dag:
        with TaskGroup("body_routing"):
            PythonOperator(task_id="check_wrong_model_rejected", python_callable=wrong_model_accepted)
    return dag.test()


def assert_names_the_failure(text: str, run_id: str) -> None:
    assert f"{DAG_ID} / {run_id}" in text
    assert f"Failed task: {FAILING_TASK}" in text
    assert "Tutorial step: Tutorial 5.1 step 3" in text
    assert (
        "Error: AirflowFailException: Gateway accepted model 'meta-llama/Llama-3.1-10B-Instruct' (HTTP 200)"
        in text
    )
    assert "second line" not in text
    assert f"Log: {BASE_URL}/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/{FAILING_TASK}?try_number=1" in text


def assert_logged_without_secrets(logged: str) -> None:
    for secret in (SMTP_PASSWORD, WEBHOOK_TOKEN):
        assert secret not in logged and quote(secret, safe="") not in logged  # as is, or in a URI
    assert "Sent to webhook connection notify_webhook: HTTP 200" in logged


def test_failed_run_is_mailed_and_posted_without_secrets(targets, probe_dags_folder, caplog):
    import email

    inbox, posts = targets
    with caplog.at_level(logging.DEBUG):
        run = run_failing_probe()
    assert_logged_without_secrets(caplog.text)
    assert str(run.state) == "failed"

    assert len(inbox.mails) == 1
    mail = email.message_from_bytes(inbox.mails[0])
    assert mail["Subject"] == f"[{DAG_ID}] {FAILING_TASK} failed in run {run.run_id}"
    assert mail["To"] == "platform@test"
    body = "".join(
        part.get_payload(decode=True).decode()
        for part in mail.walk()
        if part.get_content_type() == "text/html"
    )
    import html

    assert_names_the_failure(html.unescape(body), run.run_id)
    # the body travels base64-encoded: search the mail as read, and as sent
    for received in (body, inbox.mails[0].decode()):
        assert SMTP_PASSWORD not in received and WEBHOOK_TOKEN not in received

    assert len(posts) == 1
    path, payload = posts[0]
    assert path == f"/services/{WEBHOOK_TOKEN}"  # the token travels only as the webhook URL's path
    assert_names_the_failure(json.loads(payload)["text"], run.run_id)
    assert WEBHOOK_TOKEN.encode() not in payload
    assert SMTP_PASSWORD.encode() not in payload


def test_no_target_sends_nothing_and_says_so_once(smtp_inbox, webhook_inbox, monkeypatch, caplog):
    for name in (notifications.SMTP_CONN_ENV, notifications.EMAIL_TO_ENV, notifications.WEBHOOK_CONN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(notifications.ON_SUCCESS_ENV, "true")
    assert notifications.dag_callbacks() == {}
    assert notifications.deadline_alert(datetime.timedelta(hours=1)) is None
    (callback,) = notifications.task_callbacks()["on_failure_callback"]
    with caplog.at_level(logging.INFO, logger=notifications.__name__):
        callback({"ti": SimpleNamespace(task_id=FAILING_TASK)})
    assert [r.getMessage() for r in caplog.records] == [notifications.NOT_CONFIGURED]
    assert smtp_inbox[0].mails == [] and webhook_inbox[0] == []


def test_mail_needs_both_connection_and_recipient(monkeypatch):
    monkeypatch.setenv(notifications.SMTP_CONN_ENV, "notify_smtp")
    monkeypatch.delenv(notifications.EMAIL_TO_ENV, raising=False)
    monkeypatch.delenv(notifications.WEBHOOK_CONN_ENV, raising=False)
    assert notifications.task_callbacks()["on_failure_callback"] == [notifications.say_not_configured]


def test_scheduled_success_is_announced_only_for_scheduled_runs(targets, monkeypatch, caplog):
    inbox, posts = targets
    monkeypatch.setenv(notifications.ON_SUCCESS_ENV, "true")
    (callback,) = notifications.dag_callbacks()["on_success_callback"]
    with caplog.at_level(logging.DEBUG):
        for run_type in ("manual", "scheduled"):
            run = SimpleNamespace(dag_id=DAG_ID, run_id=f"{run_type}__2026-01-05", run_type=run_type)
            callback({"dag_run": run, "dag": None})
    assert_logged_without_secrets(caplog.text)
    assert len(inbox.mails) == 1 and len(posts) == 1
    assert "scheduled__2026-01-05 succeeded" in json.loads(posts[0][1])["text"]
    assert f"{BASE_URL}/dags/{DAG_ID}/runs/scheduled__2026-01-05" in json.loads(posts[0][1])["text"]


def test_deadline_alert_sends_through_the_same_targets(targets, caplog):
    """The callback as the triggerer runs it: awaited with the context ``Deadline.handle_miss`` builds
    (airflow/models/deadline.py: the run as DAGRunResponse JSON, and the deadline)."""
    from airflow.sdk.definitions.deadline import DeadlineReference

    inbox, posts = targets
    alert = notifications.deadline_alert(datetime.timedelta(hours=2))
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == datetime.timedelta(hours=2)
    assert alert.callback.path == "gke_inference.notifications.deadline_missed"
    assert SMTP_PASSWORD not in json.dumps(alert.callback.serialize())

    context = {
        "dag_run": {
            "dag_id": DAG_ID,
            "dag_run_id": "scheduled__2026-01-05T00:00:00+00:00",
            "state": "running",
            "queued_at": "2026-01-05T00:00:01Z",
        },
        "deadline": {"id": "d1", "deadline_time": "2026-01-05T02:00:01Z"},
    }
    with caplog.at_level(logging.DEBUG):
        asyncio.run(notifications.deadline_missed(context=context, **alert.callback.kwargs))
    assert_logged_without_secrets(caplog.text)
    assert len(inbox.mails) == 1 and len(posts) == 1
    text = json.loads(posts[0][1])["text"]
    assert "not done by its deadline" in text and "Deadline: 2026-01-05T02:00:01Z" in text
    assert f"{BASE_URL}/dags/{DAG_ID}/runs/scheduled__2026-01-05T00%3A00%3A00%2B00%3A00" in text
    assert b"not done by its deadline" in inbox.mails[0]
    assert SMTP_PASSWORD.encode() not in inbox.mails[0] and WEBHOOK_TOKEN.encode() not in posts[0][1]


def test_deadline_of_a_run_that_already_failed_sends_nothing(targets):
    """A failed run keeps its deadline in 3.3.2 (only success prunes it), so the callback may still
    fire after the failure was reported: it stays silent."""
    inbox, posts = targets
    alert = notifications.deadline_alert(datetime.timedelta(hours=2))
    context = {
        "dag_run": {"dag_id": DAG_ID, "dag_run_id": "manual__1", "state": "failed", "queued_at": None},
        "deadline": {"id": "d1", "deadline_time": "2026-01-05T02:00:01Z"},
    }
    asyncio.run(notifications.deadline_missed(context=context, **alert.callback.kwargs))
    assert inbox.mails == [] and posts == []


def test_an_error_holding_jinja_is_sent_as_it_is(targets):
    """The message is built from the context when sent and never rendered as a template: an error
    text that holds "{{ ... }}" (a Jinja error from a templated field, say) arrives unchanged."""
    inbox, posts = targets
    ti = SimpleNamespace(
        dag_id=DAG_ID, task_id=FAILING_TASK, run_id="manual__1", try_number=1, log_url=f"{BASE_URL}/log"
    )
    error = ValueError("template {{ ti.run_id }} could not be rendered")
    for notifier in notifications.task_callbacks()["on_failure_callback"]:
        notifier({"ti": ti, "exception": error})
    import email
    import html

    mail = email.message_from_bytes(inbox.mails[0])
    (body,) = [
        p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/html"
    ]
    assert "Error: ValueError: template {{ ti.run_id }} could not be rendered" in html.unescape(body)
    assert "template {{ ti.run_id }} could not" in json.loads(posts[0][1])["text"]


def test_an_unreachable_mail_server_does_not_stop_the_webhook(targets, monkeypatch, caplog):
    """The deadline alert and the scheduled-success announcement try every target on its own."""
    inbox, posts = targets
    unreachable = json.loads(os.environ["AIRFLOW_CONN_NOTIFY_SMTP"]) | {"port": free_port()}
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_SMTP", json.dumps(unreachable))
    context = {
        "dag_run": {"dag_id": DAG_ID, "dag_run_id": "scheduled__1", "state": "running", "queued_at": None},
        "deadline": {"id": "d1", "deadline_time": "2026-01-05T02:00:01Z"},
    }
    alert = notifications.deadline_alert(datetime.timedelta(hours=2))
    with caplog.at_level(logging.INFO, logger=notifications.__name__):
        asyncio.run(notifications.deadline_missed(context=context, **alert.callback.kwargs))
    assert inbox.mails == [] and len(posts) == 1
    assert "Notification through MailTarget connection notify_smtp failed" in caplog.text
