"""The production image (Dockerfile): what the build context holds, checked here; the build itself and
the DAG's import inside the image, where a Docker daemon answers (`docker info`). Without a daemon
the build test skips with the reason, also under CI=true: it fails only if Docker is there and the
build or the import fails.
"""

from __future__ import annotations

import fnmatch
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1200
# Lists the DAGs the image's DagBag imports; fails on any import error.
IMPORT_CHECK = """
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="/opt/airflow/dags")  # the image sets AIRFLOW__CORE__LOAD_EXAMPLES=false
assert not bag.import_errors, bag.import_errors
import gke_inference.manifests as manifests
# the package is the installed wheel, with its templates
assert "/site-packages/gke_inference/" in manifests.__file__, manifests.__file__
assert manifests.template_paths("crds"), "no CRD templates in the installed package"
print(sorted(bag.dags))
"""


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        for pattern in dockerignore_patterns()
        for prefix in prefixes
    )


def docker_daemon_error() -> str | None:
    """None when a Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    answer = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if answer.returncode:
        last_line = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker daemon answers (`docker info`: {last_line})"
    return None


def test_the_build_context_holds_no_venv_state_secret_test_or_sandbox():
    kept_out = [
        ".venv/bin/python",
        ".airflow/airflow.db",
        "secrets/gcp-key.json",
        ".env",
        "tests/conftest.py",
        "conftest.py",
        ".ci/run",
        "dist/gke_inference_gateway_airflow-0.1.0-py3-none-any.whl",
        "sandbox/app.py",
        "bench/setup_cost.py",
        "requirements/dev.txt",
        "src/gke_inference/__pycache__/errors.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".ruff_cache/CACHEDIR.TAG",
        ".git/HEAD",
    ]
    assert [path for path in kept_out if not ignored(path)] == []


def pip_runs_by_user(dockerfile: str) -> list[tuple[str, str]]:
    """(user, RUN line) for every RUN that calls pip; each stage starts as its base image's user."""
    runs, user = [], None
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            user = "airflow"  # the apache/airflow images end on USER ${AIRFLOW_UID} (50000, "airflow")
        elif words[:1] == ["USER"]:
            user = words[1]
        elif words[:1] == ["RUN"] and "pip" in words:
            runs.append((user, line))
    return runs


def test_pip_never_runs_as_root_in_the_airflow_image():
    # As root, the image's PATH starts with /root/bin, whose `pip` prints "You are running pip as
    # root. Please use 'airflow' user to run pip!" and exits 1 (apache/airflow Dockerfile,
    # scripts/docker/pip): the build would fail there.
    runs = pip_runs_by_user((REPO / "Dockerfile").read_text())
    assert len(runs) >= 3, "the wheel build, the lock and the wheel install"
    assert [line for user, line in runs if user in {"root", "0"}] == []


def test_the_build_context_keeps_what_the_dockerfile_copies():
    lines = (REPO / "Dockerfile").read_text().splitlines()
    copies = [line.split()[-2] for line in lines if line.startswith("COPY ") and "--from=" not in line]
    assert "requirements/runtime.txt" in copies
    assert [source for source in copies if ignored(source.rstrip("/"))] == []


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_the_image_builds_and_imports_the_dag():
    if reason := docker_daemon_error():
        pytest.skip(reason)
    tag = f"gke-inference-gateway-airflow:test-{secrets.token_hex(4)}"
    subprocess.run(["docker", "build", "--tag", tag, str(REPO)], check=True, timeout=BUILD_TIMEOUT_S)
    try:
        imported = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", IMPORT_CHECK],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert imported.returncode == 0, imported.stderr[-3000:]
        assert "gke_inference_gateway" in imported.stdout
        # The dev tools stayed out of the image.
        tools = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", "import pytest"],
            capture_output=True,
        )
        assert tools.returncode != 0, "pytest is installed in the image"
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True)
