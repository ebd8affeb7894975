"""The hardened compose stack, checked statically (no Docker here): every Airflow 3 component, the
execution API URL, no default secret, the UI on loopback only, a healthcheck on every service, and
the celery profile's Redis and workers. Variables are resolved the way Compose resolves them:
`${VAR:?message}` fails without VAR, `${VAR:-default}` falls back, `$$` is a literal `$`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
# Compose's interpolation syntax; `$$` escapes a dollar (https://docs.docker.com/reference/compose-file/interpolation/).
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z0-9_]+)(?:(?P<op>:?[?-])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|FERNET|TOKEN|JWT")
# What docs/real-project.md asks for in .env; every one of them is required.
REQUIRED = {
    "AIRFLOW_JWT_SECRET": "jwt-" + "a" * 40,
    "AIRFLOW_API_SECRET_KEY": "api-" + "b" * 40,
    "AIRFLOW_FERNET_KEY": "fernet-" + "c" * 37,
    "AIRFLOW_ADMIN_USERNAME": "ops",
    "AIRFLOW_ADMIN_PASSWORD": "pw-" + "d" * 20,
    "POSTGRES_PASSWORD": "e" * 32,
    "HF_TOKEN": "hf_" + "f" * 30,
}


class MissingVariable(KeyError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        given = bool(env.get(name)) if op.startswith(":") else name in env  # ":" also refuses empty
        if op.endswith("?") and not given:
            raise MissingVariable(f"{name}: {arg}")
        if op.endswith("-") and not given:
            return arg
        return env.get(name, "")

    return VARIABLE.sub(value, text).replace("$$", "$")


def load(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(REQUIRED)


def airflow_command(service: dict) -> str:
    """The Airflow subcommand a service runs, also when a shell wrapper starts it with `exec airflow ...`."""
    command = service["command"]
    if service.get("entrypoint") == ["/bin/bash", "-c"]:
        script = command[0]
        assert script.count("exec airflow ") == 1, script
        return script.split("exec airflow ", 1)[1].strip()
    return command


def long_running(compose: dict) -> dict[str, dict]:
    """Every service but the one-shot migration job (whose health is its exit code)."""
    return {name: s for name, s in compose["services"].items() if s.get("restart") != "no"}


def test_every_airflow_3_component_runs_and_reaches_the_execution_api(compose):
    services = compose["services"]
    assert {name: airflow_command(services[name]) for name in COMPONENTS} == COMPONENTS
    for name in [*COMPONENTS, "airflow-worker"]:
        url = services[name]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        assert url == "http://airflow-apiserver:8080/execution/", name
    assert "127.0.0.1:8080:8080" in services["airflow-apiserver"]["ports"]


def test_every_secret_is_required_and_has_no_default():
    text = COMPOSE.read_text()
    secrets = [m for m in VARIABLE.finditer(text) if SECRET_NAME.search(m["name"])]
    assert {m["name"] for m in secrets} >= {
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_ADMIN_PASSWORD",
        "POSTGRES_PASSWORD",
        "HF_TOKEN",
    }
    assert [m[0] for m in secrets if m["op"] != ":?" or not m["arg"].strip()] == []
    for name in REQUIRED:
        with pytest.raises(MissingVariable, match=name):
            load({other: value for other, value in REQUIRED.items() if other != name})


def test_every_component_shares_the_same_secrets_and_none_is_a_literal(compose):
    expected = {
        "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
    }
    airflow_services = {n: s for n, s in compose["services"].items() if n.startswith(("airflow-", "db-"))}
    assert set(COMPONENTS) | {"airflow-worker", "db-migration"} <= set(airflow_services)
    for name, service in airflow_services.items():
        env = service["environment"]
        assert {setting: env.get(setting) for setting in expected} == {
            setting: REQUIRED[variable] for setting, variable in expected.items()
        }, name
        assert f":{REQUIRED['POSTGRES_PASSWORD']}@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert (
        compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == REQUIRED["POSTGRES_PASSWORD"]
    )


def test_only_the_api_server_publishes_a_port_and_only_on_loopback(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"airflow-apiserver": ["127.0.0.1:8080:8080"]}


def test_every_long_running_service_has_a_healthcheck_and_the_migration_gates_them(compose):
    services = compose["services"]
    assert set(services) - set(long_running(compose)) == {"db-migration"}
    for name, service in long_running(compose).items():
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and not service["healthcheck"].get("disable"), name
    for name in [*COMPONENTS, "airflow-worker"]:
        assert services[name]["depends_on"]["db-migration"]["condition"] == "service_completed_successfully"


def test_the_admin_password_comes_from_the_environment(compose, tmp_path):
    """Run the api-server's start-up script up to `exec airflow`: the passwords file the simple auth
    manager reads then holds the admin password from .env (so none is generated and lost)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    api = compose["services"]["airflow-apiserver"]
    env = api["environment"]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == f"{REQUIRED['AIRFLOW_ADMIN_USERNAME']}:admin"
    assert "AIRFLOW_ADMIN_PASSWORD" not in compose["services"]["airflow-scheduler"]["environment"]
    passwords_file = tmp_path / "passwords.json"
    prelude = api["command"][0].split("&& exec airflow ")[0]
    run_env = {**env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file)}
    venv_bin = shlex.quote(str(Path(sys.executable).parent))  # the image's `python` is Airflow's
    subprocess.run(["/bin/bash", "-c", f"PATH={venv_bin}:$PATH; {prelude}"], env=run_env, check=True)
    with passwords_file.open() as stream:
        passwords = SimpleAuthManager._get_passwords(stream)
    assert passwords == {REQUIRED["AIRFLOW_ADMIN_USERNAME"]: REQUIRED["AIRFLOW_ADMIN_PASSWORD"]}
    assert json.loads(passwords_file.read_text()) == passwords


def test_the_celery_profile_adds_redis_and_several_workers(compose):
    services = compose["services"]
    in_profile = {name for name, s in services.items() if "celery" in s.get("profiles", [])}
    assert in_profile == {"redis", "airflow-worker"}
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker" and worker["deploy"]["replicas"] >= 2
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    env = worker["environment"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert "ports" not in services["redis"], "the broker is reachable on the compose network only"
    # LocalExecutor unless the operator opts in; the profile's instructions set CeleryExecutor.
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    celery = load({**REQUIRED, "AIRFLOW_EXECUTOR": "CeleryExecutor"})
    for name in [*COMPONENTS, "airflow-worker"]:
        assert celery["services"][name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_code_is_mounted_read_only_so_tasks_share_no_local_files(compose):
    for name in [*COMPONENTS, "airflow-worker"]:
        mounts = compose["services"][name]["volumes"]
        code = [m for m in mounts if m.startswith("./")]
        # the package is in the image; only the DAG folder and the key are mounted, both read-only
        assert sorted(m.split(":")[0] for m in code) == ["./dags", "./secrets"], name
        assert all(m.endswith(":ro") for m in code), name
        for mount in code:
            assert (REPO / mount.split(":")[0]).is_dir() or mount.startswith("./secrets"), mount


def test_the_guide_sets_every_variable_the_compose_file_requires():
    """docs/real-project.md's .env block is the list of steps: it must name every required variable."""
    guide = (REPO / "docs" / "real-project.md").read_text()
    env_block = guide.split("cat > .env <<EOF", 1)[1].split("\nEOF", 1)[0]
    given = {line.split("=", 1)[0] for line in env_block.strip().splitlines()}
    required = {m["name"] for m in VARIABLE.finditer(COMPOSE.read_text()) if m["op"] == ":?"}
    assert required == set(REQUIRED)
    assert required - given == set()
