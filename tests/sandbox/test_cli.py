"""`python -m sandbox serve`: writes the info file once ready, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0


def serve(tmp_path: Path, *arguments: str) -> tuple[subprocess.Popen, Path]:
    info_file = tmp_path / "info.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--info-file", str(info_file), *arguments],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, info_file


def wait_for_file(process: subprocess.Popen, path: Path) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the sandbox exited early:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the sandbox did not write its info file in time")
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_serve_writes_the_info_file_and_stops_on_sigterm(tmp_path):
    process, info_file = serve(tmp_path, "--profile", "demo", "--project-id", "cli-project")
    try:
        info = wait_for_file(process, info_file)
        assert info["project_id"] == "cli-project" and info["profile"] == "demo"
        assert info["api_endpoint"].startswith("http://127.0.0.1:")
        assert info_file.stat().st_mode & 0o077 == 0

        key = json.loads(Path(info["key_path"]).read_text())
        assert key["type"] == "service_account" and key["token_uri"] == info["api_endpoint"] + "/token"
        google = json.loads(info["airflow_connections"]["google_cloud_default"])
        assert google["conn_type"] == "google_cloud_platform"
        assert google["extra"] == {
            "key_path": info["key_path"],
            "project": "cli-project",
            "api_endpoint": info["api_endpoint"],
        }
        huggingface = json.loads(info["airflow_connections"]["huggingface_default"])
        assert huggingface["conn_type"] == "generic" and huggingface["password"].startswith("hf_")
        assert Path(info["kubeconfig_dir"]).is_dir()

        response = httpx.get(
            f"{info['api_endpoint']}/v1/projects/cli-project/services/compute.googleapis.com",
            headers={"Authorization": f"Bearer {info['access_token']}"},
        )
        assert response.status_code == 200 and response.json()["state"] == "DISABLED"
        assert httpx.get(f"{info['admin_url']}/state").json()["profile"] == "demo"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "sandbox ready" in output
    assert info["access_token"] not in output
    assert not info_file.exists() and not Path(info["key_path"]).exists()


def test_serve_refuses_a_non_loopback_host(tmp_path):
    process, info_file = serve(tmp_path, "--host", "0.0.0.0")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "loopback" in output and not info_file.exists()


def test_serve_rejects_an_unknown_profile(tmp_path):
    process, _ = serve(tmp_path, "--profile", "fast")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "invalid choice" in output


def test_serve_token_lifetime_sets_how_long_minted_tokens_live(tmp_path):
    import datetime

    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    process, info_file = serve(tmp_path, "--token-lifetime", "5")
    try:
        info = wait_for_file(process, info_file)
        credentials = service_account.Credentials.from_service_account_file(
            info["key_path"], scopes=["https://www.googleapis.com/auth/cloud-platform"]
        ).with_always_use_jwt_access(False)
        credentials.refresh(Request())
        lifetime = credentials.expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        assert datetime.timedelta(seconds=3) < lifetime <= datetime.timedelta(seconds=5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_serve_refuses_a_token_lifetime_under_a_second(tmp_path):
    process, info_file = serve(tmp_path, "--token-lifetime", "0")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "token lifetime" in output and not info_file.exists()
