"""Airflow's four components as child processes on loopback: for `make up` and for tests.

Each component gets its own process group, so stopping one stops its workers too (LocalExecutor
workers may ignore SIGTERM; the group is SIGKILLed after a grace period). Nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


class AirflowStack:
    """api-server, scheduler, dag-processor and triggerer sharing one AIRFLOW_HOME and metadata DB."""

    def __init__(self, home: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port
        self.logdir = home / "logs" / "components"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def start(self, *components: str) -> None:
        for name in components or COMPONENTS:
            self.start_process(name, [name])

    def start_process(
        self, name: str, airflow_args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        """`airflow ARGS` as a stack process named `name` (e.g. a Celery worker with its own
        environment and working directory); stop() and kill() treat it like a component."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = (self.logdir / f"{name}.log").open("a")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *airflow_args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self, *components: str) -> None:
        """Kill components abruptly (SIGKILL to the whole group), as a crash would."""
        for name in components:
            process = self.processes.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self, *components: str) -> None:
        names = components or tuple(self.processes)
        for name in names:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.processes[name].pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name in names:
            process = self.processes.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dead := self.exited():
                raise RuntimeError(f"Airflow components exited: {dead}; logs in {self.logdir}")
            if self._healthy():
                return
            time.sleep(1)
        raise RuntimeError(
            f"Airflow was not healthy at {self.url} within {timeout:.0f} s; logs in {self.logdir}"
        )

    def admin_password(self) -> str:
        generated = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(generated.read_text()).get("admin", "?") if generated.exists() else "?"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2) as response:
                health = json.load(response)
        except OSError:
            return False
        return all(
            (health.get(component) or {}).get("status") == "healthy"
            for component in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def __enter__(self) -> AirflowStack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
