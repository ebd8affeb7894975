"""The DAG's first task: refuse bad input before anything exists, and decide what this run does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.branch import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException


class PlanRunOperator(BaseOperator):
    """Validate the params as a whole and resolve what the run will do: its plan.

    The plan is every declared param, typed as the schema says, with ``project_id`` resolved (the
    param, else the GCP connection's project) and ``mode`` the effective mode (a scheduled run
    does ``schedule_mode``; ``requested_mode`` keeps what was asked), ``on_failure`` the effective
    policy after a failed build (unless asked: keep for manual runs, teardown for scheduled ones). It is the only task that reads the run's
    params: later tasks get plan values as arguments, ``plan_run.output["region"]`` (each key is
    pushed as its own XCom), never a "{{ params.x }}" string to parse again.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, schedule_mode: str = "rebuild", **kwargs: Any) -> None:
        super().__init__(multiple_outputs=True, **kwargs)
        self.schedule_mode = schedule_mode

    def execute(self, context) -> dict[str, Any]:
        # Imported here: validation loads the GPU tables, which parsing the DAG file does not need.
        from gke_inference.validation import (
            InvalidParams,
            effective_mode,
            effective_on_failure,
            validate_params,
        )

        params = context["params"]
        try:
            # Unknown conf keys land in the run's params too (process_params), so both are read.
            given = {**params, **_run_conf(context)}
            self.log.info("Run conf keys: %s", sorted(_run_conf(context)))
            validate_params(params, given, _param_names())
        except InvalidParams as err:
            raise AirflowFailException(str(err)) from None
        run_type = context["dag_run"].run_type
        mode = effective_mode(params["mode"], run_type, self.schedule_mode)
        gcp_conn_id = params["gcp_conn_id"]
        self._connection(gcp_conn_id, "GCP")
        if mode != "teardown":
            self._require_hf_token(params["hf_conn_id"])
        project_id = params["project_id"] or self._connection_project(gcp_conn_id)
        self.log.info("Project %s, mode %s (requested %s)", project_id, mode, params["mode"])
        declared = {name: params[name] for name in _param_names()}
        on_failure = effective_on_failure(params.get("on_failure"), run_type)
        resolved = {"project_id": project_id, "mode": mode, "on_failure": on_failure}
        return {**declared, **resolved, "requested_mode": params["mode"]}

    def _connection(self, conn_id: str, what: str):
        """A missing connection is final: no retry creates it."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"The {what} connection {conn_id!r} does not exist (nothing was created); create it or "
                "name another one in the run's params."
            ) from None

    def _require_hf_token(self, hf_conn_id: str) -> None:
        connection = self._connection(hf_conn_id, "Hugging Face")
        if not (connection.password or "").strip():
            raise AirflowFailException(
                f"The Hugging Face connection {hf_conn_id!r} has no password (nothing was created); set it "
                "to a Hugging Face token that may read the model (tutorial 3.2)."
            )

    def _connection_project(self, gcp_conn_id: str) -> str:
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
        from google.auth.exceptions import DefaultCredentialsError

        try:
            project_id = GoogleBaseHook(gcp_conn_id=gcp_conn_id).project_id
        except DefaultCredentialsError as err:
            # No key in the connection and none on the machine: no retry finds one.
            raise AirflowFailException(
                f"No project: the param project_id is empty and connection {gcp_conn_id!r} has no "
                f"credentials to take one from ({err})"
            ) from None
        if not project_id:
            raise AirflowFailException(
                f"No project: the param project_id is empty and connection {gcp_conn_id!r} names no project."
            )
        return project_id


def _run_conf(context) -> dict:
    dag_run = context.get("dag_run")
    return dict(getattr(dag_run, "conf", None) or {})


def _param_names() -> set[str]:
    """The params the DAG declares (build_params), not the DAG object's: a run's unknown conf keys
    also land in its params, and dag.test() may leave them on the DAG object."""
    from gke_inference.params import build_params

    return set(build_params())


class ChooseModeOperator(BaseBranchOperator):
    """ensure builds straight away; rebuild and teardown go through the teardown group first; plan
    only reports what a run would change (operators/plan_changes.py).

    :param mode: the plan's effective mode (``plan_run.output["mode"]``).
    """

    template_fields: Sequence[str] = ("mode",)

    def __init__(
        self,
        *,
        mode: str,
        build_task_id: str,
        teardown_task_id: str,
        plan_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.build_task_id = build_task_id
        self.teardown_task_id = teardown_task_id
        self.plan_task_id = plan_task_id

    def choose_branch(self, context) -> str:
        if self.mode == "plan":
            if not self.plan_task_id:
                raise AirflowFailException(
                    "mode plan needs a plan task; this DAG has none (nothing was changed)"
                )
            return self.plan_task_id
        return self.build_task_id if self.mode == "ensure" else self.teardown_task_id


def is_rebuild(mode: str) -> bool:
    """After the teardown group, only a rebuild goes on to build."""
    return mode == "rebuild"


class RelayPlanOperator(BaseOperator):
    """The first task of a group whose tasks may run after an upstream failed or was skipped: they
    take the plan from it, so it (not plan_run, whose success says nothing about the group) is
    their only way in, and their "one success" trigger rules count only what happened in the group.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#e8f0fe"

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(multiple_outputs=True, **kwargs)
        self.plan = plan

    def execute(self, context) -> dict[str, Any]:
        return dict(self.plan)
