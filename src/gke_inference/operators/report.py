"""The last task: a run report an operator can read in the UI (the run's note, task log and XCom).

When the checks passed it also announces the verified endpoint as an Asset event
(gke_inference.endpoint_asset), so DAGs scheduled on it start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from gke_inference.endpoint_asset import announce_up
from gke_inference.results import CREATED, DELETED, UNCHANGED, UPDATED, fold
from gke_inference.run_note import NOTE_MAX_CHARS, set_run_note
from gke_inference.timing import TIMING_KEY, retried_tasks, section_durations

MARKDOWN_KEY = "run_report_markdown"
REPLY_CHARS = 160
OUTCOME_LINES = ("created", "found", "deleted")


class RunReportOperator(BaseOperator):
    """Folds what the run's tasks returned (gke_inference.results) into one summary.

    :param plan: the run's plan (``plan_run.output``): project, mode, gateway port.
    :param gateway_address: the Gateway wait's result; ``chat`` and ``rejection``: the two checks'.
    Any of the three is None when its task did not run (a teardown).
    :param airflow_api_conn_id: the Airflow REST API connection the report is written to the run's
        note through; without that connection the note is left alone (said once in the log).
    """

    ui_color = "#fef7e0"
    template_fields: Sequence[str] = ("plan", "gateway_address", "chat", "rejection")

    def __init__(
        self,
        *,
        plan: Mapping[str, Any],
        gateway_address: str | None = None,
        chat: Mapping[str, Any] | None = None,
        rejection: Mapping[str, Any] | None = None,
        airflow_api_conn_id: str = "airflow_api",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.gateway_address = gateway_address
        self.chat = chat
        self.rejection = rejection
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(self, context) -> dict[str, Any]:
        ti = context["ti"]
        task_ids = [task_id for task_id in self.dag.task_ids if task_id != self.task_id]
        results = [ti.xcom_pull(task_ids=task_id) for task_id in task_ids]
        outcomes = fold(results)
        timings = {task_id: ti.xcom_pull(task_ids=task_id, key=TIMING_KEY) for task_id in task_ids}
        timings = {task_id: timing for task_id, timing in timings.items() if timing}
        chat, rejection = self.chat or {}, self.rejection or {}
        port = self.plan["gateway_port"]
        report = {
            "project_id": self.plan["project_id"],
            "mode": self.plan["mode"],
            "section_seconds": section_durations(timings),
            "retried": retried_tasks(timings),
            "gateway_url": f"http://{self.gateway_address}:{port}" if self.gateway_address else None,
            "model_reply": chat.get("reply"),
            "served_by_pod": chat.get("pod"),
            "wrong_model_status": rejection.get("status"),
            "created": outcomes[CREATED],
            # An object that was updated existed before the run: found, like an unchanged one.
            "found": sorted(set(outcomes[UPDATED]) | set(outcomes[UNCHANGED])),
            "deleted": outcomes[DELETED],
        }
        self.log.info("Run report:\n%s", json.dumps(report, indent=2, ensure_ascii=False))
        # Only a run whose checks both ran and passed (a failed check stops this task) has verified it.
        if self.gateway_address and self.chat and self.rejection:
            endpoint = announce_up(
                context, self.plan, gateway_url=report["gateway_url"], gke_version=cluster_version(results)
            )
            self.log.info("Announced the endpoint as an Asset event: %s", endpoint)
        markdown = report_markdown(report, context["run_id"])
        ti.xcom_push(key=MARKDOWN_KEY, value=markdown)
        set_run_note(self.airflow_api_conn_id, ti.dag_id, context["run_id"], markdown, self.log)
        return report


def cluster_version(results: Iterable[Any]) -> str | None:
    """The GKE version a task reported (the cluster wait returns the cluster)."""
    for task_result in results:
        if isinstance(task_result, Mapping) and task_result.get("current_master_version"):
            return task_result["current_master_version"]
    return None


def report_markdown(report: Mapping[str, Any], run_id: str) -> str:
    """The report as markdown for the run's note: the summary first, lists cut to fit the note."""
    reply = " ".join(str(report["model_reply"] or "").split())
    if len(reply) > REPLY_CHARS:
        reply = reply[:REPLY_CHARS] + "…"
    status = report["wrong_model_status"]
    lines = [
        f"### Run report: {report['mode']} of `{report['project_id']}`",
        f"- **Endpoint:** {report['gateway_url'] or 'none (not verified in this run)'}",
        f"- **Reply:** {reply or 'none'}"
        + (f" (pod `{report['served_by_pod']}`)" if report["served_by_pod"] else ""),
        f"- **Wrong model:** {f'HTTP {status}, rejected' if status else 'not checked'}",
        f"- **Retries:** {retries(report['retried'])}",
        "",
        "| section | seconds |",
        "|---|---:|",
        *(f"| {section} | {seconds} |" for section, seconds in report["section_seconds"].items()),
        "",
    ]
    footer = [f"_run `{run_id}`; the full report is the `run_report` task's XCom_"]
    for outcome in OUTCOME_LINES:
        lines.append(f"- **{outcome.capitalize()} ({len(report[outcome])}):** {objects(report[outcome])}")
    text = "\n".join([*lines, "", *footer])
    if len(text) <= NOTE_MAX_CHARS:
        return text
    # Too long for a note: counts instead of names.
    short = lines[: -len(OUTCOME_LINES)]
    short += [f"- **{o.capitalize()}:** {len(report[o])}" for o in OUTCOME_LINES]
    return "\n".join([*short, "", *footer])[:NOTE_MAX_CHARS]


def retries(retried: Mapping[str, int]) -> str:
    return ", ".join(f"`{task_id}` (try {tries})" for task_id, tries in retried.items()) or "none"


def objects(refs: Sequence[str]) -> str:
    return ", ".join(f"`{ref}`" for ref in refs) or "none"
