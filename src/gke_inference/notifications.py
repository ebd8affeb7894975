"""Tell someone: failure (and scheduled-success) notifications through Airflow's notifiers.

Targets come from the environment at parse time, like the schedule; each names an Airflow connection,
so the SMTP password and the webhook token stay in the connection and never in a message or a log:

- ``GKE_INFERENCE_NOTIFY_SMTP_CONN_ID`` + ``GKE_INFERENCE_NOTIFY_EMAIL_TO``: mail through the smtp
  provider's ``SmtpNotifier`` (the connection's extra ``from_email`` is the sender).
- ``GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID``: a Slack-compatible incoming webhook through the slack
  provider's ``SlackWebhookNotifier`` (connection type ``slackwebhook``: the token in the password,
  the base URL in the host).
- ``GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS=true``: also say when a scheduled run succeeded.

Wiring (``dags/gke_inference_gateway.py``)::

    with DAG(..., default_args={..., **notifications.task_callbacks()}, **notifications.dag_callbacks(),
             deadline=notifications.deadline_alert(timedelta(hours=2))) as dag:

Failures are reported per task (a task's ``on_failure_callback`` runs after its last try): it is the
one callback whose context holds the exception, and with teardown running after a failed build the
run's last failed task is often not the cause.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from gke_inference.docs import TASK_DOCS

log = logging.getLogger(__name__)
# slack_sdk's WebhookClient logs "Sending a request - url: ..." at debug level, and the URL holds the
# webhook's token (slack_sdk/webhook/client.py); the hook hands the client its own logger unless given
# one (airflow/providers/slack/hooks/slack_webhook.py): this one stays above debug
WEBHOOK_CLIENT_LOG = logging.getLogger(f"{__name__}.webhook_client")
WEBHOOK_CLIENT_LOG.setLevel(logging.INFO)

SMTP_CONN_ENV = "GKE_INFERENCE_NOTIFY_SMTP_CONN_ID"
EMAIL_TO_ENV = "GKE_INFERENCE_NOTIFY_EMAIL_TO"
WEBHOOK_CONN_ENV = "GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID"
ON_SUCCESS_ENV = "GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS"
FINISHED = ("success", "failed")
NOT_CONFIGURED = (
    f"No notification sent: no target configured (set {SMTP_CONN_ENV} + {EMAIL_TO_ENV} "
    f"and/or {WEBHOOK_CONN_ENV})."
)


def tutorial_step(task_id: str) -> str:
    """``Tutorial 5.1 step 3`` for a task whose docs name its step, else the first sentence of its docs."""
    what = TASK_DOCS.get(task_id, ("-", "-"))[0]
    match = re.match(r"Tutorial [\d.]+(?: step \d+)?", what)
    return match.group(0) if match else what.split(". ")[0].split(": ")[0]


def first_line(error: object) -> str:
    lines = str(error).strip().splitlines() if error is not None else []
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()


def failure_message(context: dict[str, Any]) -> tuple[str, str]:
    """``(subject, text)`` naming the run, the task, its tutorial step, the error and the log link."""
    ti = context["ti"]
    subject = f"[{ti.dag_id}] {ti.task_id} failed in run {ti.run_id}"
    text = (
        f"DAG run: {ti.dag_id} / {ti.run_id}\n"
        f"Failed task: {ti.task_id} (try {ti.try_number})\n"
        f"Tutorial step: {tutorial_step(ti.task_id)}\n"
        f"Error: {first_line(context.get('exception'))}\n"
        f"Log: {ti.log_url}\n"
    )
    return subject, text


def success_message(context: dict[str, Any]) -> tuple[str, str]:
    run = context["dag_run"]
    subject = f"[{run.dag_id}] scheduled run {run.run_id} succeeded"
    return (
        subject,
        f"DAG run: {run.dag_id} / {run.run_id}\nState: success\nRun: {run_url(run.dag_id, run.run_id)}\n",
    )


def run_url(dag_id: str, run_id: str) -> str:
    # the shape of RuntimeTaskInstance.log_url without the task (airflow/sdk/execution_time/task_runner.py)
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    return f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}"


def as_html(text: str) -> str:
    return "<pre>" + html.escape(text) + "</pre>"


class GatewayMailNotifier(SmtpNotifier):
    """``SmtpNotifier`` whose subject and body are this project's message.

    The message is set in ``notify``, after the notifier rendered its template fields, so an error
    text holding ``{{`` is sent as it is, never rendered as Jinja."""

    def __init__(self, message: Callable[[dict], tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def notify(self, context):
        subject, text = self.message(context)
        self.subject, self.html_content = subject, as_html(text)
        super().notify(context)


def webhook_hook(conn_id: str) -> SlackWebhookHook:
    return SlackWebhookHook(slack_webhook_conn_id=conn_id, logger=WEBHOOK_CLIENT_LOG)


class GatewayWebhookNotifier(SlackWebhookNotifier):
    """``SlackWebhookNotifier`` posting this project's message as the ``text`` of the payload."""

    def __init__(self, message: Callable[[dict], tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(text="", **kwargs)
        self.message = message

    @cached_property
    def hook(self) -> SlackWebhookHook:
        return webhook_hook(self.slack_webhook_conn_id)

    def notify(self, context):
        # SlackWebhookNotifier.notify logs the response's api_url, the webhook URL holding the token
        # (airflow/providers/slack/notifications/slack_webhook.py): send through the hook instead
        subject, text = self.message(context)
        response = self.hook.send(text=f"*{subject}*\n{text}")
        log.info("Sent to webhook connection %s: HTTP %s", self.slack_webhook_conn_id, response.status_code)


def configured_notifiers(message: Callable[[dict], tuple[str, str]]) -> list:
    notifiers: list = []
    smtp_conn_id, email_to = os.environ.get(SMTP_CONN_ENV), os.environ.get(EMAIL_TO_ENV)
    if smtp_conn_id and email_to:
        notifiers.append(
            GatewayMailNotifier(
                message, smtp_conn_id=smtp_conn_id, to=[a.strip() for a in email_to.split(",")]
            )
        )
    if webhook_conn_id := os.environ.get(WEBHOOK_CONN_ENV):
        notifiers.append(GatewayWebhookNotifier(message, slack_webhook_conn_id=webhook_conn_id))
    return notifiers


def say_not_configured(context: dict) -> None:
    log.info(NOT_CONFIGURED)


def task_callbacks() -> dict[str, list]:
    """``default_args`` entries: every task's final failure is sent to the configured targets."""
    return {"on_failure_callback": configured_notifiers(failure_message) or [say_not_configured]}


def notify_if_scheduled(notifiers: list) -> Callable[[dict], None]:
    def callback(context: dict) -> None:
        if str(context["dag_run"].run_type) == "scheduled":
            for notifier in notifiers:
                notifier(context)

    return callback


def dag_callbacks() -> dict[str, list]:
    """``DAG(...)`` arguments: with ``GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS=true``, a scheduled
    run that succeeded is announced too."""
    if os.environ.get(ON_SUCCESS_ENV, "").lower() not in ("1", "true", "yes"):
        return {}
    notifiers = configured_notifiers(success_message)
    return {"on_success_callback": [notify_if_scheduled(notifiers)]} if notifiers else {}


def deadline_message(context: dict[str, Any]) -> tuple[str, str]:
    """From the context the scheduler hands a missed deadline's callback (``Deadline.handle_miss``,
    airflow/models/deadline.py): the run as the REST API's DAGRunResponse, and the deadline."""
    run, deadline = context["dag_run"], context["deadline"]
    subject = f"[{run['dag_id']}] run {run['dag_run_id']} not done by its deadline"
    text = (
        f"DAG run: {run['dag_id']} / {run['dag_run_id']}\n"
        f"Queued at: {run.get('queued_at')}\n"
        f"Deadline: {deadline['deadline_time']}\n"
        f"State: {run.get('state')}\n"
        f"Run: {run_url(run['dag_id'], run['dag_run_id'])}\n"
    )
    return subject, text


async def deadline_missed(
    context: dict[str, Any], smtp_conn_id: str = "", email_to: str = "", webhook_conn_id: str = ""
) -> None:
    """The Deadline Alert's callback: runs in the triggerer (an ``AsyncCallback``), so it sends
    asynchronously (the mail through ``SmtpNotifier.async_notify``). Airflow 3.3.2 prunes a run's deadlines when it succeeds but
    not when it fails (``DagRun.update_state``, airflow/models/dagrun.py), so a run that already failed
    (and was reported by its task) is not reported again as late."""
    if context["dag_run"].get("state") in FINISHED:
        log.info(
            "Deadline passed for run %s, which already ended %s: no alert.",
            context["dag_run"]["dag_run_id"],
            context["dag_run"]["state"],
        )
        return
    subject, text = deadline_message(context)
    if smtp_conn_id and email_to:
        mail = SmtpNotifier(
            smtp_conn_id=smtp_conn_id, to=email_to.split(","), subject=subject, html_content=as_html(text)
        )
        await mail.async_notify(context)
    if webhook_conn_id:
        response = await webhook_hook(webhook_conn_id).async_send(text=f"*{subject}*\n{text}")
        log.info("Sent to webhook connection %s: HTTP %s", webhook_conn_id, response.status_code)


def deadline_alert(interval: timedelta):
    """``DAG(deadline=...)``: alert the configured targets when a run is not done ``interval`` after it
    was queued; ``None`` (no deadline) when no target is configured."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    targets = {
        "smtp_conn_id": os.environ.get(SMTP_CONN_ENV, "") if os.environ.get(EMAIL_TO_ENV) else "",
        "email_to": os.environ.get(EMAIL_TO_ENV, "") if os.environ.get(SMTP_CONN_ENV) else "",
        "webhook_conn_id": os.environ.get(WEBHOOK_CONN_ENV, ""),
    }
    if not any(targets.values()):
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=AsyncCallback(deadline_missed, kwargs=targets),
    )
