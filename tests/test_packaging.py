"""The Dockerfile and the compose stack cannot be built here (no Docker engine): check them statically."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_COMPONENTS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


RUNTIME_LOCK = REPO / "requirements" / "runtime.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"
DEV_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "ruff", "playwright", "aiosmtpd"}


def locked_versions(lock: Path = RUNTIME_LOCK) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{lock.name} line is not pinned with ==: {line!r}"
        pins[name.lower()] = version.split(";")[0].strip()
    return pins


def dockerfile_lines() -> list[str]:
    return [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def direct_dependencies(source: Path) -> set[str]:
    names = set()
    for line in source.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= direct_dependencies(source.parent / line.split()[1])
        elif line:
            names.add(re.split(r"[<>=!\[ ]", line, maxsplit=1)[0].lower())
    return names


@pytest.mark.parametrize("name", ["runtime", "dev"])
def test_every_direct_dependency_is_in_its_lock(name):
    pins = locked_versions(REPO / "requirements" / f"{name}.txt")
    missing = direct_dependencies(REPO / "requirements" / f"{name}.in") - set(pins)
    assert not missing, f"in requirements/{name}.in but not locked: {missing}"


def test_the_dev_lock_agrees_with_the_runtime_lock_on_every_shared_package():
    runtime, dev = locked_versions(RUNTIME_LOCK), locked_versions(DEV_LOCK)
    assert set(runtime) <= set(dev), "dev is runtime plus the dev tools"
    assert {name: (v, dev[name]) for name, v in runtime.items() if dev[name] != v} == {}


def test_the_runtime_lock_holds_no_test_or_lint_tool():
    assert DEV_ONLY <= set(locked_versions(DEV_LOCK))
    assert DEV_ONLY & set(locked_versions(RUNTIME_LOCK)) == set()


def test_dockerfile_base_image_matches_the_locked_airflow_and_python():
    airflow = locked_versions()["apache-airflow"]
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    bases = {line.split()[1] for line in dockerfile_lines() if line.startswith("FROM ")}
    # both stages (the wheel build and the image) on the locked Airflow
    assert bases == {f"apache/airflow:slim-{airflow}-python3.11"}
    assert ">=3.11" in python
    assert f"ARG AIRFLOW_VERSION={airflow}" in dockerfile_lines()


def test_dockerfile_installs_the_lock_with_airflow_re_pinned():
    run = next(line for line in dockerfile_lines() if line.startswith("RUN pip install") and "-r " in line)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in run
    assert "-r /requirements.txt" in run


def test_every_path_the_dockerfile_copies_exists():
    copies = [
        line.split()[-2] for line in dockerfile_lines() if line.startswith("COPY ") and "--from=" not in line
    ]
    assert {"requirements/runtime.txt", "pyproject.toml", "src/", "include/manifests/", "dags/"} <= set(
        copies
    )
    assert not any("dev" in source for source in copies), "the image takes the runtime lock only"
    for source in copies:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_compose_runs_every_airflow_3_component_on_local_executor(compose):
    services = compose["services"]
    assert {"postgres", "db-migration"} | AIRFLOW_COMPONENTS <= set(services)
    env = compose["x-airflow-common"]["environment"]
    # LocalExecutor unless the operator opts into the celery profile (tests/stack/test_compose.py)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    commands = {name: services[name]["command"] for name in AIRFLOW_COMPONENTS | {"db-migration"}}
    # the api-server first writes the admin's password from the environment, then execs Airflow
    assert commands["airflow-apiserver"][0].endswith("&& exec airflow api-server")
    commands["airflow-apiserver"] = "api-server"
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "db-migration": "db migrate",
    }


def test_compose_execution_api_url_points_at_the_api_server(compose):
    env = compose["x-airflow-common"]["environment"]
    url = env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    host_port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)/execution/", url)
    assert host_port, url
    host, port = host_port.groups()
    assert host == "airflow-apiserver"
    published = compose["services"]["airflow-apiserver"]["ports"]
    assert any(mapping.endswith(f":{port}") for mapping in published)
    assert all(mapping.startswith("127.0.0.1:") for mapping in published), "the UI must bind loopback"


def test_compose_database_driver_is_in_the_lock(compose):
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:${POSTGRES_PASSWORD:?"
    )
    pins = locked_versions()
    assert "psycopg2-binary" in pins and "apache-airflow-providers-postgres" in pins


def test_compose_components_wait_for_the_migration(compose):
    for name in AIRFLOW_COMPONENTS:
        depends = compose["services"][name]["depends_on"]
        assert depends["db-migration"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_compose_mounts_exist(compose):
    for volume in compose["x-airflow-common"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./") and source != "./secrets":
            assert (REPO / source).is_dir(), f"compose mounts {source}, which does not exist"
