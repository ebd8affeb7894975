"""The last task: a run report an operator can read in the UI (task log and XCom)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from gke_inference.results import CREATED, DELETED, UNCHANGED, UPDATED, fold
from gke_inference.timing import TIMING_KEY, section_durations


class RunReportOperator(BaseOperator):
    """Folds what the run's tasks returned (gke_inference.results) into one summary.

    :param plan: the run's plan (``plan_run.output``): project, mode, gateway port.
    :param gateway_address: the Gateway wait's result; ``chat`` and ``rejection``: the two checks'.
    Any of the three is None when its task did not run (a teardown).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.gateway_address = gateway_address
        self.chat = chat
        self.rejection = rejection

    def execute(self, context) -> dict[str, Any]:
        ti = context["ti"]
        task_ids = [task_id for task_id in self.dag.task_ids if task_id != self.task_id]
        outcomes = fold(ti.xcom_pull(task_ids=task_id) for task_id in task_ids)
        timings = {task_id: ti.xcom_pull(task_ids=task_id, key=TIMING_KEY) for task_id in task_ids}
        chat, rejection = self.chat or {}, self.rejection or {}
        port = self.plan["gateway_port"]
        report = {
            "project_id": self.plan["project_id"],
            "mode": self.plan["mode"],
            "section_seconds": section_durations({k: v for k, v in timings.items() if v}),
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
        return report
