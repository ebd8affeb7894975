"""Tell someone: failure (and scheduled-success) notifications through Airflow's notifiers.

Targets come from the environment at parse time, like the schedule; each names an Airflow connection,
so the SMTP password and the webhook token stay in the connection and never in a message or a log:

- ``GKE_INFERENCE_NOTIFY_SMTP_CONN_ID`` + ``GKE_INFERENCE_NOTIFY_EMAIL_TO``: mail through the smtp
  provider's ``SmtpNotifier`` (the connection's extra ``from_email`` is the sender; comma-separated
  recipients).
- ``GKE_INFERENCE_NOTIFY_WEBHOOK_CONN_ID``: a Slack-compatible incoming webhook through the slack
  provider's ``SlackWebhookHook`` (connection type ``slackwebhook``: the token in the password,
  the base URL in the host).
- ``GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS=true``: also say when a scheduled run succeeded.
- ``GKE_INFERENCE_NOTIFY_DEADLINE_MINUTES`` (default 180): a run not done that long after it was
  queued is reported (an Airflow Deadline Alert).

Wiring (``dags/gke_inference_gateway.py``)::

    with DAG(..., default_args={..., **notifications.task_callbacks()}, **notifications.dag_callbacks(),
             deadline=notifications.deadline_alert()) as dag:

The DAG file builds these at parse time; the smtp and slack providers (and slack_sdk, aiosmtplib) are
imported only when a message is sent: importing them cost ~0.27 s on every parse of the DAG file.

Failures are reported per task (a task's ``on_failure_callback`` runs after its last try): it is the
one callback whose context holds the exception, and with teardown running after a failed build the
run's last failed task is often not the cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import logging
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

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
DEADLINE_ENV = "GKE_INFERENCE_NOTIFY_DEADLINE_MINUTES"
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


class MailTarget:
    """Mail through the smtp provider's ``SmtpNotifier``, built only when a message is sent."""

    def __init__(self, conn_id: str, to: list[str]) -> None:
        self.conn_id, self.to = conn_id, to

    def notifier(self, subject: str, text: str):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        # subject and body are given, so SmtpNotifier.notify renders neither: an error text holding
        # "{{" is sent as it is, never rendered as Jinja (airflow/providers/smtp/notifications/smtp.py)
        return SmtpNotifier(
            smtp_conn_id=self.conn_id, to=self.to, subject=subject, html_content=as_html(text)
        )

    def send(self, subject: str, text: str, context: dict) -> None:
        self.notifier(subject, text).notify(context)

    async def asend(self, subject: str, text: str, context: dict) -> None:
        await self.notifier(subject, text).async_notify(context)


class WebhookTarget:
    """A Slack-compatible incoming webhook through the slack provider's hook, imported when sending.

    Not ``SlackWebhookNotifier.notify``: it logs the response's api_url, the webhook URL holding the
    token (airflow/providers/slack/notifications/slack_webhook.py)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def hook(self):
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        return SlackWebhookHook(slack_webhook_conn_id=self.conn_id, logger=WEBHOOK_CLIENT_LOG)

    def send(self, subject: str, text: str, context: dict) -> None:
        self.sent(self.hook().send(text=f"*{subject}*\n{text}"))

    async def asend(self, subject: str, text: str, context: dict) -> None:
        self.sent(await self.hook().async_send(text=f"*{subject}*\n{text}"))

    def sent(self, response) -> None:
        log.info("Sent to webhook connection %s: HTTP %s", self.conn_id, response.status_code)


class GatewayNotifier(BaseNotifier):
    """A notifier (``on_failure_callback`` / ``on_success_callback``) sending this project's message.

    Nothing is rendered as a template: the message is built from the context when it is sent."""

    template_fields = ()

    def __init__(
        self, message: Callable[[dict], tuple[str, str]], target: MailTarget | WebhookTarget
    ) -> None:
        super().__init__()
        self.message, self.target = message, target

    def notify(self, context):
        subject, text = self.message(context)
        self.target.send(subject, text, context)


def configured_targets(smtp_conn_id: str, email_to: str, webhook_conn_id: str) -> list:
    targets: list = []
    if smtp_conn_id and email_to:
        targets.append(MailTarget(smtp_conn_id, [a.strip() for a in email_to.split(",")]))
    if webhook_conn_id:
        targets.append(WebhookTarget(webhook_conn_id))
    return targets


@dataclasses.dataclass(frozen=True)
class NotifySettings:
    """Whom a DAG tells, and when: the deployment's environment variables, or an environment's
    ``notify`` section (gke_inference.environments), field for field."""

    smtp_conn_id: str = ""
    email_to: str = ""  # comma-separated
    webhook_conn_id: str = ""
    on_scheduled_success: bool = False
    deadline_minutes: int | None = None

    @classmethod
    def from_env(cls) -> NotifySettings:
        minutes = os.environ.get(DEADLINE_ENV)
        return cls(
            smtp_conn_id=os.environ.get(SMTP_CONN_ENV, ""),
            email_to=os.environ.get(EMAIL_TO_ENV, ""),
            webhook_conn_id=os.environ.get(WEBHOOK_CONN_ENV, ""),
            on_scheduled_success=os.environ.get(ON_SUCCESS_ENV, "").lower() in ("1", "true", "yes"),
            deadline_minutes=int(minutes) if minutes else None,
        )

    def targets(self) -> dict[str, str]:
        """The targets as plain strings (a Deadline Alert's callback kwargs are serialized); mail
        needs both the connection and the recipients."""
        mail = bool(self.smtp_conn_id and self.email_to)
        return {
            "smtp_conn_id": self.smtp_conn_id if mail else "",
            "email_to": self.email_to if mail else "",
            "webhook_conn_id": self.webhook_conn_id,
        }


def configured_notifiers(
    message: Callable[[dict], tuple[str, str]], settings: NotifySettings
) -> list[GatewayNotifier]:
    return [GatewayNotifier(message, target) for target in configured_targets(**settings.targets())]


@contextlib.contextmanager
def each_target_on_its_own(target: MailTarget | WebhookTarget):
    """A target that cannot be reached is logged, and the next one still tried (as Airflow does for
    a task's list of callbacks: airflow/sdk/execution_time/task_runner.py)."""
    try:
        yield
    except Exception:
        log.exception("Notification through %s connection %s failed", type(target).__name__, target.conn_id)


def say_not_configured(context: dict) -> None:
    log.info(NOT_CONFIGURED)


def task_callbacks(settings: NotifySettings | None = None) -> dict[str, list]:
    """``default_args`` entries: every task's final failure is sent to the configured targets
    (``settings``: the deployment's environment variables unless given)."""
    notifiers = configured_notifiers(failure_message, settings or NotifySettings.from_env())
    return {"on_failure_callback": notifiers or [say_not_configured]}


def notify_if_scheduled(notifiers: list) -> Callable[[dict], None]:
    def callback(context: dict) -> None:
        if str(context["dag_run"].run_type) == "scheduled":
            for notifier in notifiers:
                with each_target_on_its_own(notifier.target):
                    notifier(context)

    return callback


def dag_callbacks(settings: NotifySettings | None = None) -> dict[str, list]:
    """``DAG(...)`` arguments: with ``GKE_INFERENCE_NOTIFY_ON_SCHEDULED_SUCCESS=true``, a scheduled
    run that succeeded is announced too."""
    settings = settings or NotifySettings.from_env()
    if not settings.on_scheduled_success:
        return {}
    notifiers = configured_notifiers(success_message, settings)
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
    for target in configured_targets(smtp_conn_id, email_to, webhook_conn_id):
        with each_target_on_its_own(target):
            await target.asend(subject, text, context)


def deadline_alert(
    default: timedelta = timedelta(hours=3),
    settings: NotifySettings | None = None,
    keep_for_hours: float = 0,
):
    """``DAG(deadline=...)``: alert the configured targets when a run is not done ``default`` (or
    ``GKE_INFERENCE_NOTIFY_DEADLINE_MINUTES``) after it was queued; ``None`` (no deadline) when no
    target is configured. ``keep_for_hours`` (the DAG's default) is added: a verified run then holds
    its environment that long on purpose, and is not late."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    settings = settings or NotifySettings.from_env()
    targets = settings.targets()
    if not any(targets.values()):
        return None
    minutes = settings.deadline_minutes
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=(timedelta(minutes=minutes) if minutes else default) + timedelta(hours=keep_for_hours),
        callback=AsyncCallback(deadline_missed, kwargs=targets),
    )
