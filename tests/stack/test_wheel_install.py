"""The wheel as a deployment gets it (docs/real-project.md: Composer, Astro, the image): a fresh venv
with only the runtime lock (`uv pip sync requirements/runtime.txt`), the built wheel installed with
--no-deps, only `dags/` copied into a fresh DAGs folder (as Composer's bucket or git-sync holds it), a
private AIRFLOW_HOME and no PYTHONPATH or working directory in the repo. That venv's Python parses the
DAG (no import errors, every trigger classpath imports from the installed package) and runs it whole
with `dag.test()` (what `airflow dags test` runs) against the twin.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from sandbox.core.faults import creating_requests
from scripts.sandbox_process import airflow_connection_env
from tests.resilience.stack.conftest import environment_names
from tests.test_wheel import UV, build_wheel

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "gke_inference_gateway"
pytestmark = [pytest.mark.slow, pytest.mark.dag, pytest.mark.timeout(600)]

# Runs in the clean venv: parse, import the trigger classpaths as the triggerer does, run the DAG.
PARSE_AND_RUN = """
import importlib, inspect, json, os, pkgutil, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.triggers.base import BaseTrigger
import gke_inference, gke_inference.triggers

conf, out = json.loads(sys.argv[1]), sys.argv[2]
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["gke_inference_gateway"]
trigger_files = {}
for found in pkgutil.iter_modules(gke_inference.triggers.__path__, "gke_inference.triggers."):
    for _, cls in inspect.getmembers(importlib.import_module(found.name), inspect.isclass):
        if issubclass(cls, BaseTrigger) and vars(cls).get("classpath"):
            module, _, name = cls.classpath.rpartition(".")
            trigger_files[cls.classpath] = inspect.getfile(getattr(importlib.import_module(module), name))
run = dag.test(run_conf=conf)
with open(out, "w") as result:
    json.dump({
        "package_file": gke_inference.__file__,
        "trigger_files": trigger_files,
        "dag_file": dag.fileloc,
        "sys_path": sys.path,
        "repo_names": {m: str(getattr(importlib.util.find_spec(m), "submodule_search_locations", None))
                       for m in ("sandbox", "tests", "scripts")},
        "state": str(run.state),
        "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
    }, result)
"""


def timed(argv: list[str], timings: dict[str, float], step: str, **kwargs) -> None:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    timings[step] = round(time.monotonic() - started, 1)
    assert done.returncode == 0, f"{step} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def clean_deployment(tmp_path_factory):
    """(venv python, DAGs folder, AIRFLOW_HOME, timings) of a deployment that has only the runtime lock,
    the wheel and a copy of dags/."""
    root, timings = tmp_path_factory.mktemp("clean-deployment"), {}
    venv, python = root / "venv", root / "venv" / "bin" / "python"
    timed([*UV, "venv", "--quiet", "--python", "3.11", "--no-python-downloads", str(venv)], timings, "venv")
    lock = REPO / "requirements" / "runtime.txt"
    timed([*UV, "pip", "sync", "--quiet", "--python", str(python), str(lock)], timings, "sync_runtime_lock")
    started = time.monotonic()
    wheel = build_wheel(root / "dist")
    timings["build_wheel"] = round(time.monotonic() - started, 1)
    install = [*UV, "pip", "install", "--quiet", "--python", str(python), "--no-deps", str(wheel)]
    timed(install, timings, "install_wheel")
    dags = shutil.copytree(REPO / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    home = root / "airflow-home"
    home.mkdir()
    return python, Path(dags), home, timings


def clean_env(dags: Path, home: Path, sandbox_info: dict) -> dict[str, str]:
    """A new environment, not a copy of this one: no PYTHONPATH, VIRTUAL_ENV or AIRFLOW_* of the repo."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GKE_INFERENCE_RETRY_DELAY_SECONDS": "1",
        "GKE_INFERENCE_SCHEDULE": "none",
        **airflow_connection_env(sandbox_info),
    }


def site_packages(python: Path) -> Path:
    venv = python.parent.parent
    return venv / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)


def test_the_installed_wheel_parses_and_runs_the_whole_dag_from_a_copied_dags_folder(
    clean_deployment, sandbox, tmp_path
):
    python, dags, home, timings = clean_deployment
    env = clean_env(dags, home, sandbox.info)
    timed([str(python), "-m", "airflow", "db", "migrate"], timings, "db_migrate", env=env, cwd=tmp_path)
    conf = environment_names("wheel")
    result_file = tmp_path / "result.json"
    requests_before = len(sandbox.requests())
    script = [str(python), "-c", PARSE_AND_RUN, json.dumps(conf), str(result_file)]
    timed(script, timings, "parse_and_run_dag", env=env, cwd=tmp_path)
    result = json.loads(result_file.read_text())
    print(f"clean-venv timings (s): {timings}")

    # The code came from the wheel in the venv, the DAG from the copied folder, nothing from the repo.
    installed = site_packages(python)
    assert Path(result["package_file"]) == installed / "gke_inference" / "__init__.py"
    assert len(result["trigger_files"]) >= 5
    assert {
        path for path in result["trigger_files"].values() if not path.startswith(f"{installed}/")
    } == set()
    assert Path(result["dag_file"]).parent == dags
    assert [entry for entry in result["sys_path"] if entry.startswith(str(REPO))] == []
    # (some third-party wheel in the lock ships a top-level `tests` package: where each name comes from)
    assert {name: where for name, where in result["repo_names"].items() if str(REPO) in where} == {}

    # Every task succeeded or was skipped: which branches a first build skips (teardown, rebuild, the
    # cost guard's cleanup, the full CRD set) is tests/dags/test_dag_run.py's business; here, none failed.
    tasks = result["tasks"]
    assert result["state"] == "success", tasks
    assert {task: state for task, state in tasks.items() if state not in {"success", "skipped"}} == {}
    assert sum(state == "success" for state in tasks.values()) > 20, tasks

    # The twin saw this run create the cluster and the Gateway.
    made = creating_requests(sandbox.requests()[requests_before:])
    project = sandbox.info["project_id"]
    assert f"POST /v1/projects/{project}/locations/us-central1/clusters" in made, made
    assert any(request.endswith("/gateways") or "/gateways/inference-gateway" in request for request in made)
    clusters = sandbox.sandbox.clusters
    assert f"projects/{project}/locations/us-central1/clusters/{conf['cluster_name']}" in clusters
