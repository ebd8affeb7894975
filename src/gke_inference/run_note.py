"""Write the run report into the DAG run's note, which the run's page shows as rendered markdown.

Airflow 3.3 gives a task no way to set its own run's note: the Task SDK's Execution API reads a
note (``DagRun.note``) and sets one only on a run it triggers (``TriggerDAGRunPayload.note``,
airflow/api_fastapi/execution_api/routes/dag_runs.py). The public REST API does set it:
``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}?update_mask=note`` (at most 1000 characters,
airflow/api_fastapi/core_api/datamodels/dag_run.py ``DAGRunPatchBody``), as a user of the auth
manager, so the task needs a connection naming the api-server and a user allowed to edit runs.
"""

from __future__ import annotations

import urllib.parse
from logging import Logger

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

NOTE_MAX_CHARS = 1000
TIMEOUT_S = 30.0


class AirflowApiHook(BaseHook):
    """The Airflow REST API as a user: connection host = the api-server's URL, login/password."""

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    def set_dag_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        conn = self.get_connection(self.conn_id)
        base = (conn.host or "").rstrip("/")
        if "://" not in base:
            base = f"http://{base}:{conn.port or 8080}"
        run = f"{urllib.parse.quote(dag_id, safe='')}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        with httpx.Client(base_url=base, timeout=TIMEOUT_S, trust_env=False) as client:
            # The auth managers' token endpoint (SimpleAuthManager, FAB): a JWT for this user.
            token = client.post("/auth/token", json={"username": conn.login, "password": conn.password})
            token.raise_for_status()
            response = client.patch(
                f"/api/v2/dags/{run}",
                params={"update_mask": "note"},
                json={"note": note},
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
            response.raise_for_status()


def set_run_note(conn_id: str, dag_id: str, run_id: str, note: str, log: Logger) -> bool:
    """Set the note; a missing connection or a failing API is logged, never fails the run report."""
    try:
        AirflowApiHook(conn_id).set_dag_run_note(dag_id, run_id, note[:NOTE_MAX_CHARS])
    except AirflowNotFoundException:
        log.info("No connection %r: the run report is not written to the run's note.", conn_id)
        return False
    except httpx.HTTPError as err:
        # The URL and status only: neither the password nor the token reaches the log.
        log.warning("Could not write the run's note through the Airflow REST API: %s", err)
        return False
    log.info("The run report is the run's note.")
    return True
