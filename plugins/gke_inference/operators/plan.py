"""The DAG's first task: refuse bad input before anything exists, and decide what this run does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.branch import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.validation import InvalidParams, effective_mode, validate_params


class PlanRunOperator(BaseOperator):
    """Validate the params as a whole, resolve the project and the effective mode.

    Pushes `project_id` and `mode` as XComs; every later task reads them from here.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, gcp_conn_id: str = "{{ params.gcp_conn_id }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id

    template_fields: Sequence[str] = ("gcp_conn_id",)

    def execute(self, context) -> dict[str, str]:
        params = context["params"]
        try:
            validate_params(params)
        except InvalidParams as err:
            raise AirflowFailException(str(err)) from None
        project_id = params["project_id"] or self._connection_project()
        mode = effective_mode(params["mode"], context["dag_run"].run_type)
        self.log.info("Project %s, mode %s (requested %s)", project_id, mode, params["mode"])
        ti = context["ti"]
        ti.xcom_push(key="project_id", value=project_id)
        ti.xcom_push(key="mode", value=mode)
        return {"project_id": project_id, "mode": mode}

    def _connection_project(self) -> str:
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

        project_id = GoogleBaseHook(gcp_conn_id=self.gcp_conn_id).project_id
        if not project_id:
            raise AirflowFailException(
                f"No project: the param project_id is empty and connection {self.gcp_conn_id!r} names no project."
            )
        return project_id


class ChooseModeOperator(BaseBranchOperator):
    """ensure builds straight away; rebuild and teardown go through the teardown group first."""

    def __init__(self, *, build_task_id: str, teardown_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_task_id = build_task_id
        self.teardown_task_id = teardown_task_id

    def choose_branch(self, context) -> str:
        mode = context["ti"].xcom_pull(task_ids="plan_run", key="mode")
        return self.build_task_id if mode == "ensure" else self.teardown_task_id


def is_rebuild(mode: str) -> bool:
    """After the teardown group, only a rebuild goes on to build."""
    return mode == "rebuild"
