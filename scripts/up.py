"""`make up`: the sandbox plus Airflow (api-server, scheduler, dag-processor, triggerer) on loopback.

Every process gets its own process group, so Ctrl-C (or SIGTERM) stops each group, workers
included, and nothing is left behind.
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

from scripts.sandbox_process import airflow_connection_env, running_sandbox

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


def airflow_env(home: Path, port: int, info: dict) -> dict[str, str]:
    env = dict(os.environ)
    env.update(airflow_connection_env(info))
    env.update(
        {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        }
    )
    return env


def start(component: str, env: dict[str, str], logdir: Path) -> subprocess.Popen:
    log = (logdir / f"{component}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", component],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # LocalExecutor workers may ignore SIGTERM: make sure the whole group is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_healthy(port: int, processes: dict[str, subprocess.Popen]) -> None:
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(1)
    raise RuntimeError(f"Airflow was not healthy at {url} within {HEALTH_TIMEOUT_S} s")


def admin_password(home: Path) -> str:
    generated = home / "simple_auth_manager_passwords.json.generated"
    return json.loads(generated.read_text()).get("admin", "?") if generated.exists() else "?"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    home = Path(os.environ["AIRFLOW_HOME"])
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    logdir = home / "logs" / "components"
    logdir.mkdir(parents=True, exist_ok=True)
    # SIGTERM behaves like Ctrl-C, so `kill` of make's child also cleans up. SIGINT is set explicitly:
    # a shell starts background jobs with it ignored, and Python would keep it that way.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with running_sandbox("demo", home / "up") as info:
        env = airflow_env(home, port, info)
        processes = {name: start(name, env, logdir) for name in COMPONENTS}
        try:
            wait_healthy(port, processes)
            print(f"Airflow UI: http://127.0.0.1:{port}  login admin / {admin_password(home)}")
            print(f"Sandbox GCP API: {info['api_endpoint']}  admin: {info['admin_url']}")
            print(f"Component logs: {logdir}.  Ctrl-C stops everything.", flush=True)
            while all(process.poll() is None for process in processes.values()):
                time.sleep(1)
            print("An Airflow component exited; stopping the rest.", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nStopping...", flush=True)
            return 0
        finally:
            stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
