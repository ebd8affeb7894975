"""One real Airflow (api-server, scheduler, dag-processor, triggerer) for every test in this folder.

The stack runs against the session's in-process sandbox, so tests read its request log and change
its timing directly. Its Hugging Face connection carries a canary token that no log, XCom or
rendered field may ever show. Scheduled runs are off: every run here is triggered through the REST API.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.testing import unique_name
from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import airflow_connection_env

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "gke_inference_gateway"
DAG_PARSE_TIMEOUT_S = 120
FINISHED = {"success", "failed"}
SQLITE_LOCK_RETRIES = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started_stack(tmp_path_factory, env: dict[str, str]) -> Iterator[AirflowStack]:
    """A migrated, started and healthy stack with ``env``; the body of a fixture (``yield from``)."""
    stack = AirflowStack(tmp_path_factory.mktemp("airflow"), free_port(), env)
    stack.migrate()
    with stack:
        stack.start()
        stack.wait_healthy()
        yield stack


class AirflowApi:
    """The stack's public REST API, authenticated as the simple auth manager's admin."""

    def __init__(self, stack: AirflowStack) -> None:
        self.stack = stack
        self.client = httpx.Client(base_url=stack.url, timeout=30)
        self._login()

    def _login(self) -> None:
        answer = self.client.post(
            "/auth/token", json={"username": "admin", "password": self.stack.admin_password()}
        )
        answer.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        answer = self.client.request(method, path, **kwargs)
        if answer.status_code == 401:  # the JWT expired during a long session
            self._login()
            answer = self.client.request(method, path, **kwargs)
        return answer

    def get_json(self, path: str, **params) -> dict:
        answer = self.request("GET", path, params=params)
        answer.raise_for_status()
        return answer.json()

    def trigger(self, conf: dict, run_id: str | None = None) -> httpx.Response:
        body = {"logical_date": None, "conf": conf, "dag_run_id": run_id or f"f2__{secrets.token_hex(6)}"}
        for _ in range(SQLITE_LOCK_RETRIES):
            answer = self.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=body)
            # SQLite lets one writer at a time: a busy scheduler can make the API's write time out.
            if answer.status_code != 500:
                break
            time.sleep(1)
        return answer

    def trigger_ok(self, conf: dict) -> str:
        run_id = f"f2__{secrets.token_hex(6)}"
        answer = self.trigger(conf, run_id)
        # 409: an earlier attempt that answered 500 had created the run after all.
        assert answer.status_code in (200, 409), answer.text
        return run_id

    def run_state(self, run_id: str) -> str:
        return self.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", limit=100)[
            "task_instances"
        ]

    def task_states(self, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(run_id)}

    def wait_for(self, run_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(run_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise AssertionError(
            f"run {run_id} still {self.run_state(run_id)} after {timeout} s: {self.task_states(run_id)}"
        )

    def wait_finished(self, run_id: str, timeout: float = 180) -> str:
        return self.wait_for(run_id, FINISHED, timeout)

    def wait_dag_parsed(self) -> None:
        deadline = time.monotonic() + DAG_PARSE_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.request("GET", f"/api/v2/dags/{DAG_ID}").status_code == 200:
                return
            time.sleep(1)
        raise AssertionError(f"{DAG_ID} was not parsed within {DAG_PARSE_TIMEOUT_S} s")


@pytest.fixture(scope="package")
def hf_canary() -> str:
    # "/" and "+" make its URL-encoded form differ from the plaintext, so both can be searched for.
    return f"hf_canary_{secrets.token_hex(12)}/{secrets.token_hex(4)}+"


@pytest.fixture(scope="package")
def airflow_stack(sandbox, hf_canary, tmp_path_factory) -> Iterator[AirflowStack]:
    connections = airflow_connection_env(sandbox.info)
    # The canary is a token the twin's Hub knows, with access to the gated model (the pre-flight asks).
    sandbox.run(sandbox.sandbox.hub.add_token, hf_canary)
    connections["AIRFLOW_CONN_HUGGINGFACE_DEFAULT"] = json.dumps(
        {"conn_type": "generic", "password": hf_canary, "extra": {"endpoint": sandbox.info["hf_endpoint"]}}
    )
    env = {
        **connections,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PYTHONPATH": str(REPO),
        "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
        "GKE_INFERENCE_SCHEDULE": "none",
    }
    yield from started_stack(tmp_path_factory, env)


@pytest.fixture(scope="package")
def airflow_api(airflow_stack) -> AirflowApi:
    api = AirflowApi(airflow_stack)
    api.wait_dag_parsed()
    answer = api.request("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert answer.status_code == 200, answer.text
    return api


def environment_names(prefix: str) -> dict:
    """Params that give a run its own VPC, subnets and cluster in the shared sandbox."""
    return {
        "network_name": unique_name(f"{prefix}-vpc"),
        "subnet_name": unique_name(f"{prefix}-subnet"),
        "proxy_subnet_name": unique_name(f"{prefix}-proxy"),
        "cluster_name": unique_name(prefix),
        # A gateway listens on port 80 on GKE; an unprivileged user cannot bind it on loopback.
        "gateway_port": 8080,
    }


@pytest.fixture
def slow_provisioning(sandbox):
    """Set how long clusters created in the test stay PROVISIONING; the profile is restored after."""
    original = sandbox.sandbox.profile

    def set_seconds(seconds: float) -> None:
        sandbox.run(
            setattr, sandbox.sandbox, "profile", dataclasses.replace(original, cluster_provisioning=seconds)
        )

    yield set_seconds
    sandbox.run(setattr, sandbox.sandbox, "profile", original)
