"""The last task: a run report an operator can read in the UI (task log and XCom)."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseOperator

from gke_inference.timing import TIMING_KEY, section_durations

GATEWAY_SENSOR = "verify.wait_gateway_address"
CHAT_CHECK = "verify.check_chat_completion"
REJECTION_CHECK = "body_routing.check_wrong_model_rejected"

# The list keys the tasks' XComs use, by what they mean for the report. Kubernetes objects come from
# server-side apply ({"created", "updated", "unchanged"}), APIs from the enable step ({"enabled",
# "already_enabled"}); an object that was updated existed before the run, so it was found.
CREATED_LISTS = ("created", "enabled")
FOUND_LISTS = ("found", "updated", "unchanged", "already_enabled")


class RunReportOperator(BaseOperator):
    """Collects what the run's tasks reported into one summary."""

    ui_color = "#fef7e0"

    def execute(self, context) -> dict[str, Any]:
        ti, params = context["ti"], context["params"]
        task_ids = [task_id for task_id in self.dag.task_ids if task_id != self.task_id]
        results = {task_id: ti.xcom_pull(task_ids=task_id) for task_id in task_ids}
        timings = {task_id: ti.xcom_pull(task_ids=task_id, key=TIMING_KEY) for task_id in task_ids}
        address = results.get(GATEWAY_SENSOR)
        chat = results.get(CHAT_CHECK) or {}
        rejection = results.get(REJECTION_CHECK) or {}
        created, found = outcomes(results)
        report = {
            "project_id": ti.xcom_pull(task_ids="plan_run", key="project_id"),
            "mode": ti.xcom_pull(task_ids="plan_run", key="mode"),
            "section_seconds": section_durations({k: v for k, v in timings.items() if v}),
            "gateway_url": f"http://{address}:{params['gateway_port']}" if address else None,
            "model_reply": chat.get("reply"),
            "served_by_pod": chat.get("pod"),
            "wrong_model_status": rejection.get("status"),
            "created": sorted(created),
            "found": sorted(found),
        }
        self.log.info("Run report:\n%s", json.dumps(report, indent=2, ensure_ascii=False))
        return report


def outcomes(results: dict[str, Any]) -> tuple[set[str], set[str]]:
    """What the run created and what it found already there, from the tasks' XComs.

    One resource reports `{"name", "created": bool}`, the Hugging Face Secret `{"secret", "action"}`,
    many resources report lists (CREATED_LISTS, FOUND_LISTS). What the run created is not also found.
    """
    created: set[str] = set()
    found: set[str] = set()
    for task_id, result in results.items():
        if not isinstance(result, dict):
            continue
        for key in CREATED_LISTS:
            created.update(_strings(result.get(key)))
        for key in FOUND_LISTS:
            found.update(_strings(result.get(key)))
        if isinstance(result.get("created"), bool):
            (created if result["created"] else found).add(result.get("name") or task_id)
        if "action" in result:
            (created if result["action"] == "created" else found).add(result.get("secret") or task_id)
    # A later task may apply an object an earlier one created (body routing replaces the route).
    return created, found - created


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []
