"""Run the DAG twice under a real scheduler against a sandbox with the "realistic" timing profile.

`dag.test()` runs one task at a time in one process, so it cannot show what the DAG's parallel
branches and deferrable sensors buy. This starts Airflow's real components (LocalExecutor,
parallelism 4, a triggerer) in a throw-away AIRFLOW_HOME, triggers a fresh run and then a rerun
on the finished environment, and samples every task's state from the metadata DB meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.timeline import MetadataReader, RunRecord, follow_run
from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import REPO, airflow_connection_env, running_sandbox

DAG_ID = "gke_inference_gateway"
PROFILE = "realistic"
PARALLELISM = 4
DAG_PARSE_TIMEOUT_S = 120
RUN_TIMEOUT_S = 600
SAMPLE_INTERVAL_S = 0.1


@dataclass(frozen=True)
class StackRuns:
    fresh: RunRecord
    rerun: RunRecord
    rerun_requests: list[dict]  # the sandbox's request log entries while the rerun ran
    parallelism: int
    sample_interval: float


def run_twice(workdir: Path, run_conf: dict) -> StackRuns:
    """A fresh run then a rerun (mode ensure) on one stack and one sandbox."""
    home = workdir / "airflow"
    with running_sandbox(PROFILE, workdir / "sandbox") as info:
        extra_env = {
            **airflow_connection_env(info),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "PYTHONPATH": str(REPO),
            # A manual trigger only: no scheduled run may start when the DAG is unpaused.
            "GKE_INFERENCE_SCHEDULE": "none",
            "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
        }
        with AirflowStack(home, _free_port(), extra_env) as stack:
            stack.migrate()
            stack.start()
            stack.wait_healthy()
            api = _RestApi(stack.url)
            api.wait_for_dag(DAG_ID, DAG_PARSE_TIMEOUT_S)
            api.unpause(DAG_ID)
            reader = MetadataReader(home / "airflow.db")
            fresh = _run(api, reader, run_conf)
            log_before = len(_sandbox_requests(info))
            rerun = _run(api, reader, run_conf)
            rerun_requests = _sandbox_requests(info)[log_before:]
    return StackRuns(fresh, rerun, rerun_requests, PARALLELISM, SAMPLE_INTERVAL_S)


def _run(api: _RestApi, reader: MetadataReader, run_conf: dict) -> RunRecord:
    run_id = api.trigger(DAG_ID, {"mode": "ensure", **run_conf})
    record = follow_run(reader, DAG_ID, run_id, RUN_TIMEOUT_S, SAMPLE_INTERVAL_S)
    if record.state != "success":
        failed = {t: s for t, s in record.timeline.final_states().items() if s not in {"success", "skipped"}}
        raise RuntimeError(f"benchmark run {run_id} ended {record.state}; tasks not successful: {failed}")
    return record


def _sandbox_requests(info: dict) -> list[dict]:
    with urllib.request.urlopen(f"{info['admin_url']}/requests", timeout=10) as response:
        return json.load(response)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _RestApi:
    """The few Airflow REST calls the benchmark needs (the stack runs with all users admins)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def wait_for_dag(self, dag_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.call("GET", f"/dags/{dag_id}")
                return
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
            time.sleep(1)
        raise TimeoutError(f"the dag-processor did not register {dag_id} within {timeout:.0f} s")

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})[
            "dag_run_id"
        ]


def default_run_conf() -> dict:
    # The gateway listens on port 80 as on GKE; an unprivileged user cannot bind it on loopback.
    return {} if os.geteuid() == 0 else {"gateway_port": 8080}
