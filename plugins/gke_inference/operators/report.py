"""The last task: a run report an operator can read in the UI (task log and XCom)."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseOperator

from gke_inference.timing import TIMING_KEY, section_durations

GATEWAY_SENSOR = "verify.wait_gateway_address"
CHAT_CHECK = "verify.check_chat_completion"
REJECTION_CHECK = "body_routing.check_wrong_model_rejected"


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
        report = {
            "project_id": ti.xcom_pull(task_ids="plan_run", key="project_id"),
            "mode": ti.xcom_pull(task_ids="plan_run", key="mode"),
            "section_seconds": section_durations({k: v for k, v in timings.items() if v}),
            "gateway_url": f"http://{address}:{params['gateway_port']}" if address else None,
            "model_reply": chat.get("reply"),
            "served_by_pod": chat.get("pod"),
            "wrong_model_status": rejection.get("status"),
            "created": sorted(_names(results, "created")),
            "found": sorted(_names(results, "found")),
        }
        self.log.info("Run report:\n%s", json.dumps(report, indent=2, ensure_ascii=False))
        return report


def _names(results: dict[str, Any], outcome: str) -> set[str]:
    """Tasks report `{"created": bool}` for one resource or `{"created": [...], "found": [...]}` for many."""
    names: set[str] = set()
    for task_id, result in results.items():
        if not isinstance(result, dict):
            continue
        value = result.get(outcome)
        if isinstance(value, list):
            names.update(str(item) for item in value)
        elif outcome == "created" and value is True:
            names.add(result.get("name") or task_id)
        elif outcome == "found" and result.get("created") is False:
            names.add(result.get("name") or task_id)
    return names
