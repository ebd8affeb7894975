"""The Dockerfile and the compose stack cannot be built here (no Docker engine): check them statically."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_COMPONENTS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.txt line is not pinned with ==: {line!r}"
        pins[name.lower()] = version.split(";")[0].strip()
    return pins


def dockerfile_lines() -> list[str]:
    return [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_every_direct_dependency_is_in_the_lock():
    pins = locked_versions()
    for line in (REPO / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[<>=!\[ ]", line, maxsplit=1)[0].lower()
            assert name in pins, f"{name} is in requirements.in but not locked"


def test_dockerfile_base_image_matches_the_locked_airflow_and_python():
    airflow = locked_versions()["apache-airflow"]
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    base = next(line for line in dockerfile_lines() if line.startswith("FROM "))
    assert base == f"FROM apache/airflow:{airflow}-python3.11"
    assert ">=3.11" in python
    assert f"ARG AIRFLOW_VERSION={airflow}" in dockerfile_lines()


def test_dockerfile_installs_the_lock_with_airflow_re_pinned():
    run = next(line for line in dockerfile_lines() if line.startswith("RUN pip install"))
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in run
    assert "-r /requirements.txt" in run


def test_every_path_the_dockerfile_copies_exists():
    copies = [line.split()[-2] for line in dockerfile_lines() if line.startswith("COPY ")]
    assert {"requirements.txt", "dags/", "plugins/", "include/"} <= set(copies)
    for source in copies:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_compose_runs_every_airflow_3_component_on_local_executor(compose):
    services = compose["services"]
    assert {"postgres", "db-migration"} | AIRFLOW_COMPONENTS <= set(services)
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    commands = {name: services[name]["command"] for name in AIRFLOW_COMPONENTS | {"db-migration"}}
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
        "postgresql+psycopg2://airflow:airflow@postgres/"
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
