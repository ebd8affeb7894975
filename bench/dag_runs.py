"""The scheduler runs behind figures 1-5: the real DAG, its floor, a rerun and a sequential run.

`dag.test()` runs one task at a time in one process, so it cannot show what the DAG's parallel
branches and deferrable sensors buy. This starts Airflow's real components (LocalExecutor, a
triggerer) in a throw-away AIRFLOW_HOME against a sandbox with the "realistic" timing profile, and
samples every task's state from the metadata DB while each run goes:
1. the real DAG, fresh (parallelism 4); the sandbox's wait log while it ran;
2. an ensure-mode rerun of the finished environment, with the sandbox's request log meanwhile;
3. the floor DAG (bench/floor_dag.py), generated from 1's shape and waits, `floor_repeats` times;
4. the real DAG, fresh again on a new sandbox, with executor parallelism 1 (scheduler and
   triggerer restarted with the new sandbox's connections).
One run each of 1, 2 and 4: each costs minutes, and `make bench` must stay under 10.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import floor_dag
from bench.timeline import MetadataReader, RunRecord, follow_run
from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import REPO, airflow_connection_env, running_sandbox

DAG_ID = "gke_inference_gateway"
PROFILE = "realistic"
PARALLELISM = 4
DAG_PARSE_TIMEOUT_S = 120
RUN_TIMEOUT_S = 600
SAMPLE_INTERVAL_S = 0.1
DAGS_FOLDER = REPO / "dags"


@dataclass(frozen=True)
class StackRuns:
    fresh: RunRecord
    waits: list[dict]  # the sandbox's wait log entries while the fresh run ran
    rerun: RunRecord
    rerun_requests: list[dict]  # the sandbox's request log entries while the rerun ran
    floors: list[RunRecord]
    sequential: RunRecord
    shape: floor_dag.DagShape
    params: dict
    parallelism: int
    sample_interval: float


def real_dag(dags_folder: Path | None = None):  # noqa: ANN201 - an airflow.sdk DAG
    """The real DAG, parsed as the dag-processor would."""
    from airflow.dag_processing.dagbag import DagBag

    folder = dags_folder or DAGS_FOLDER
    bag = DagBag(dag_folder=str(folder))
    if DAG_ID not in bag.dags:
        raise RuntimeError(f"{DAG_ID} did not parse from {folder}: {bag.import_errors}")
    return bag.dags[DAG_ID]


def default_params(dag) -> dict:  # noqa: ANN001
    return {name: dag.params[name] for name in dag.params}


def run_all(workdir: Path, run_conf: dict, floor_repeats: int) -> StackRuns:
    home, dags = workdir / "airflow", workdir / "dags"
    dag = real_dag()
    shape = floor_dag.shape_of(dag)
    params = {**default_params(dag), **run_conf}
    _link_real_dags(dags)
    with running_sandbox(PROFILE, workdir / "sandbox") as info:
        with AirflowStack(home, _free_port(), _stack_env(info, dags, PARALLELISM)) as stack:
            stack.migrate()
            stack.start()
            stack.wait_healthy()
            api = _RestApi(stack.url)
            reader = MetadataReader(home / "airflow.db")
            api.ready(DAG_ID)
            fresh = _run(api, reader, DAG_ID, run_conf)
            waits = _sandbox_get(info, "waits")
            log_before = len(_sandbox_get(info, "requests"))
            rerun = _run(api, reader, DAG_ID, run_conf)
            rerun_requests = _sandbox_get(info, "requests")[log_before:]

            chosen = floor_dag.behaviours(shape, fresh.timeline)
            floor_dag.write(dags, shape, chosen, fresh.run_id)
            floor_id = shape.dag_id + floor_dag.FLOOR_SUFFIX
            api.ready(floor_id)
            floors = [_run(api, reader, floor_id, {}) for _ in range(floor_repeats)]

            with running_sandbox(PROFILE, workdir / "sandbox-sequential") as fresh_info:
                # Workers inherit the scheduler's environment, triggers the triggerer's: both get
                # the new sandbox's connections; the executor runs one task at a time.
                stack.stop("scheduler", "triggerer")
                env = _stack_env(fresh_info, dags, 1)
                for component in ("scheduler", "triggerer"):
                    stack.start_process(component, [component], env=env)
                stack.wait_healthy()
                sequential = _run(api, reader, DAG_ID, run_conf)
    return StackRuns(
        fresh,
        waits_during(waits, fresh),
        rerun,
        rerun_requests,
        floors,
        sequential,
        shape,
        params,
        PARALLELISM,
        SAMPLE_INTERVAL_S,
    )


def waits_during(waits: list[dict], run: RunRecord) -> list[dict]:
    ended = run.started_at + run.wall_seconds
    return [w for w in waits if run.started_at <= w["began"] and w["ended"] <= ended]


def _link_real_dags(dags: Path) -> None:
    """The stack's dags folder: the real DAG folder's entries (linked) plus, later, the floor file."""
    dags.mkdir(parents=True, exist_ok=True)
    for entry in DAGS_FOLDER.iterdir():
        if entry.name != "__pycache__":
            (dags / entry.name).symlink_to(entry)


def _stack_env(info: dict, dags: Path, parallelism: int) -> dict[str, str]:
    return {
        **airflow_connection_env(info),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        # The sequential baseline: one task at a time, in the executor and in the DAG.
        **({"AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1"} if parallelism == 1 else {}),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # The floor file is written mid-run: list the folder often.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PYTHONPATH": str(REPO),
        # A manual trigger only: no scheduled run may start when the DAG is unpaused.
        "GKE_INFERENCE_SCHEDULE": "none",
        "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
    }


def _run(api: _RestApi, reader: MetadataReader, dag_id: str, run_conf: dict) -> RunRecord:
    conf = {"mode": "ensure", **run_conf} if dag_id == DAG_ID else {}
    run_id = api.trigger(dag_id, conf)
    record = follow_run(reader, dag_id, run_id, RUN_TIMEOUT_S, SAMPLE_INTERVAL_S)
    if record.state != "success":
        failed = {t: s for t, s in record.timeline.final_states().items() if s not in {"success", "skipped"}}
        raise RuntimeError(f"benchmark run {run_id} ended {record.state}; tasks not successful: {failed}")
    return record


def _sandbox_get(info: dict, what: str) -> list[dict]:
    with urllib.request.urlopen(f"{info['admin_url']}/{what}", timeout=10) as response:
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

    def ready(self, dag_id: str) -> None:
        """Wait until the dag-processor registered the DAG, then unpause it."""
        deadline = time.monotonic() + DAG_PARSE_TIMEOUT_S
        while True:
            try:
                self.call("GET", f"/dags/{dag_id}")
                break
            except urllib.error.HTTPError as error:
                if error.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1)
        self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})[
            "dag_run_id"
        ]


def default_run_conf() -> dict:
    # The gateway listens on port 80 as on GKE; an unprivileged user cannot bind it on loopback.
    return {} if os.geteuid() == 0 else {"gateway_port": 8080}
