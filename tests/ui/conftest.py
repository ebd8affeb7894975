"""One sandbox (demo profile) and one Airflow stack on loopback, shared by the UI and REST tests.

This is what `make up` starts: the sandbox as a child process, its connections handed to Airflow
through the environment, and Airflow's four components as real processes.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import airflow_connection_env, running_sandbox

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "gke_inference_gateway"
DAG_PARSE_TIMEOUT_S = 120
# The api-server answers slowly while a busy machine also runs the scheduler and the tasks.
API_TIMEOUT_S = 60


@dataclass(frozen=True)
class RunningAirflow:
    url: str
    username: str
    password: str
    sandbox_info: dict
    logdir: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api_token(url: str, username: str, password: str) -> str:
    request = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
        return json.load(response)["access_token"]


def wait_for_dag(url: str, token: str, timeout: float = DAG_PARSE_TIMEOUT_S) -> None:
    """The dag-processor parses the DAG file some seconds after start; the UI shows nothing before."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        f"{url}/api/v2/dags/{DAG_ID}", headers={"Authorization": f"Bearer {token}"}
    )
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the DAG {DAG_ID} was not parsed within {timeout:.0f} s")


def add_airflow_api_connection(url: str, token: str, username: str, password: str) -> None:
    """The connection the run report writes the run's note through (gke_inference.run_note): this
    api-server as this user, created through the REST API as an operator would."""
    connection = {
        "connection_id": "airflow_api",
        "conn_type": "http",
        "host": url,
        "login": username,
        "password": password,
    }
    request = urllib.request.Request(
        f"{url}/api/v2/connections",
        data=json.dumps(connection).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=API_TIMEOUT_S).close()


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory) -> RunningAirflow:
    home = tmp_path_factory.mktemp("airflow-ui")
    with running_sandbox("demo", home / "sandbox") as info:
        extra_env = {
            **airflow_connection_env(info),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
            # Unpausing must not also start the weekly rebuild next to the run under test.
            "GKE_INFERENCE_SCHEDULE": "none",
            # The log servers' default ports (8793, 8794) may be taken by another stack on this machine.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONPATH": str(REPO),
        }
        with AirflowStack(home, free_port(), extra_env) as stack:
            stack.migrate()
            stack.start()
            stack.wait_healthy()
            password = stack.admin_password()
            token = api_token(stack.url, "admin", password)
            wait_for_dag(stack.url, token)
            add_airflow_api_connection(stack.url, token, "admin", password)
            yield RunningAirflow(stack.url, "admin", password, info, stack.logdir)
