"""The whole DAG on CeleryExecutor: two workers that share no working directory, temp directory,
AIRFLOW_HOME or log folder (as two machines would not), Redis as the broker (Debian's
redis-server on a loopback port). Every task succeeds and tasks ran on both workers, so no task
depends on a file another task left on its machine. The compose stack's `celery` profile runs the
same executor, broker and worker command in containers (docker-compose.yaml).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import airflow_connection_env
from tests._tools import needs_tools
from tests.resilience.stack.conftest import DAG_ID, AirflowApi, environment_names, free_port

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    needs_tools("redis-server", hint="`apt-get install redis-server`; .ci/run does it as root"),
]

WORKERS = ("worker-a", "worker-b")
READY_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    # No persistence, loopback only, its own directory.
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    with (workdir / "redis.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_text(workdir / "redis.log", "Ready to accept connections", process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        assert process.poll() is None, (
            f"{path.name}: exited {process.returncode}:\n{path.read_text()[-3000:]}"
        )
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {path} within {timeout} s:\n{path.read_text()[-3000:]}")


def start_worker(stack: AirflowStack, name: str, root: Path) -> None:
    """`airflow celery worker` with a working directory, TMPDIR, AIRFLOW_HOME and log folder of its own."""
    dirs = {part: root / name / part for part in ("work", "tmp", "home", "logs")}
    for path in dirs.values():
        path.mkdir(parents=True)
    env = {
        "AIRFLOW_HOME": str(dirs["home"]),
        "TMPDIR": str(dirs["tmp"]),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(dirs["logs"]),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_hostname.hostname",
        "CELERY_TEST_WORKER_HOSTNAME": name,
        "PYTHONPATH": f"{stack.env['PYTHONPATH']}:{Path(__file__).parent}",
    }
    # --skip-serve-logs: the log server would listen on every interface; the test reads no task log.
    args = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2", "--skip-serve-logs"]
    stack.start_process(name, args, env=env, cwd=dirs["work"])


@pytest.fixture(scope="module")
def celery_api(sandbox, redis_url, tmp_path_factory) -> Iterator[AirflowApi]:
    # The configured folders: the repo's own (root conftest, Makefile) unless the environment says otherwise.
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    env = {
        **airflow_connection_env(sandbox.info),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": redis_url.removesuffix("/0") + "/1",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PYTHONPATH": str(dags.parent),
        "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
        "GKE_INFERENCE_SCHEDULE": "none",
    }
    root = tmp_path_factory.mktemp("celery")
    stack = AirflowStack(root / "airflow", free_port(), env)
    stack.migrate()
    with stack:
        stack.start()
        for name in WORKERS:
            start_worker(stack, name, root)
        for name in WORKERS:
            wait_for_text(stack.logdir / f"{name}.log", f"{name}@", stack.processes[name])
            wait_for_text(stack.logdir / f"{name}.log", " ready.", stack.processes[name])
        stack.wait_healthy()
        api = AirflowApi(stack)
        api.wait_dag_parsed()
        answer = api.request("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        assert answer.status_code == 200, answer.text
        yield api


def test_the_whole_dag_succeeds_with_tasks_on_both_celery_workers(celery_api):
    run_id = celery_api.trigger_ok(environment_names("celery"))
    state = celery_api.wait_finished(run_id, timeout=420)
    instances = celery_api.task_instances(run_id)
    assert state == "success", {ti["task_id"]: ti["state"] for ti in instances}
    # Every task that reached a worker succeeded; the rest are the branches this run skips
    # (teardown, rebuild: tests/dags/test_dag_run.py) and EmptyOperators, which the scheduler
    # marks successful without sending them to a worker.
    ran = {ti["task_id"]: ti for ti in instances if ti["hostname"]}
    # The cost guard's wait (keep_for_hours 0) and gate (nothing to tear down) skip themselves on a worker.
    decided_to_skip = {"keep_for": "skipped", "cleanup.start": "skipped"}
    assert {task: ti["state"] for task, ti in ran.items() if ti["state"] != "success"} == decided_to_skip
    not_sent = {ti["task_id"]: (ti["state"], ti["operator"]) for ti in instances if not ti["hostname"]}
    assert all(state == "skipped" or op == "EmptyOperator" for state, op in not_sent.values()), not_sent
    ran_on = Counter(ti["hostname"] for ti in ran.values())
    assert set(ran_on) == set(WORKERS) and len(ran) > 20, ran_on
