"""`make up` brings up the sandbox and Airflow's four components on loopback; Ctrl-C stops them all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240
pytestmark = pytest.mark.stack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within {timeout} s; output:\n{''.join(seen)[-3000:]}")


def command_of(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # a short-lived helper process that already exited
        return ""


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_serves_the_ui_and_ctrl_c_leaves_nothing_behind(tmp_path):
    port = free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW_PORT": str(port)}
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "scripts.up"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ui_line = wait_for_line(up, "Airflow UI:", START_TIMEOUT_S)
        assert f"http://127.0.0.1:{port}" in ui_line and "login admin / " in ui_line
        started = psutil.Process(up.pid).children(recursive=True)
        commands = [command_of(child) for child in started]
        # The api-server retitles its process "airflow api_server -- host:...".
        for component in ("api[-_]server", "scheduler", "dag-processor", "triggerer"):
            assert any(re.search(f"airflow {component}", command) for command in commands), commands
        assert any("sandbox serve" in command for command in commands), commands
        listening = {
            conn.laddr.ip
            for conn in psutil.net_connections("inet")
            if conn.status == "LISTEN" and conn.laddr.port == port
        }
        assert listening == {"127.0.0.1"}, "the UI must bind loopback only"

        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        time.sleep(1)
        survivors = [
            child for child in started if child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        ]
        assert survivors == [], [child.cmdline() for child in survivors]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
