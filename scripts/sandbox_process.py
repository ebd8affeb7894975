"""Run the sandbox as a child process for the demo and `make up`, and hand its connections to Airflow."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15


@contextlib.contextmanager
def running_sandbox(profile: str, workdir: Path) -> Generator[dict]:
    """Start `python -m sandbox serve`, yield its info once ready, stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    info_file = workdir / "sandbox-info.json"
    info_file.unlink(missing_ok=True)
    log = (workdir / "sandbox.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--info-file", str(info_file), "--profile", profile],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield _wait_for_info(process, info_file, workdir / "sandbox.log")
    finally:
        _stop(process)
        log.close()


def airflow_connection_env(info: dict) -> dict[str, str]:
    """`AIRFLOW_CONN_*` variables for the sandbox's connections."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": uri for conn_id, uri in info["airflow_connections"].items()}


def _wait_for_info(process: subprocess.Popen, info_file: Path, log_path: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the sandbox exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        if info_file.exists():
            return json.loads(info_file.read_text())
        time.sleep(0.1)
    raise RuntimeError(f"the sandbox did not report ready within {START_TIMEOUT_S} s; see {log_path}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
