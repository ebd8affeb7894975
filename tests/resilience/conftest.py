"""Resilience fixtures: Airflow's own retries, a short client timeout, and the fault matrix report.

Every fault-matrix cell is one parametrized test whose id is ``<call>|<fault>``; its outcome is
collected here and printed at the end of the run (``pytest_terminal_summary``), so ``make test``
shows the matrix without ``-s``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

# What the fault-matrix tests set as the GCP connection's request_timeout, so that a "slower than the
# client timeout" fault costs seconds, not the production default of 30 s.
SHORT_REQUEST_TIMEOUT = 1.0
# Airflow's task retries for the DAG's tasks are a handful; a cell must recover within these.
MAX_TRIES = 3

# row -> column -> the cell's expected_outcome ("ok", "fails fast") or "FAILED", for the parametrized
# tests that take a ``cell`` (with ``row.name``, ``column`` and ``expected_outcome``); the test
# module declares MATRIX_COLUMNS and NOT_APPLICABLE.
_outcomes: dict[str, dict[str, str]] = defaultdict(dict)
_matrix_module: list[Any] = []


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("cell") if callspec is not None else None
    if cell is None or not hasattr(item.module, "MATRIX_COLUMNS"):
        return
    if not _matrix_module:
        _matrix_module.append(item.module)
    if call.excinfo is not None and call.when in ("setup", "call"):
        _outcomes[cell.row.name][cell.column] = "FAILED"
    elif call.when == "call":
        _outcomes[cell.row.name][cell.column] = cell.expected_outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    module = _matrix_module[0]
    passed = sum(outcome != "FAILED" for row in _outcomes.values() for outcome in row.values())
    total = sum(len(row) for row in _outcomes.values())
    terminalreporter.section(f"fault matrix: {passed}/{total} cells passed")
    for line in matrix_table(module.MATRIX_COLUMNS, module.NOT_APPLICABLE):
        terminalreporter.write_line(line)


def matrix_table(columns: tuple[str, ...], not_applicable: dict[tuple[str, str], str]) -> list[str]:
    """A Markdown table: one row per external call, one column per fault kind, then the n/a notes."""
    header = ["call", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []
    for row, outcomes in _outcomes.items():
        cells = []
        for column in columns:
            if column in outcomes:
                cells.append(outcomes[column])
            elif (row, column) in not_applicable:
                note = not_applicable[(row, column)]
                if note not in notes:
                    notes.append(note)
                cells.append(f"n/a [{notes.index(note) + 1}]")
            else:
                cells.append("not run")
        lines.append("| " + " | ".join([row, *cells]) + " |")
    lines.extend(f"[{number}] {note}" for number, note in enumerate(notes, 1))
    return lines


@dataclass
class Tries:
    """How a task fared under Airflow's retries."""

    count: int = 0
    result: Any = None
    errors: list[BaseException] = field(default_factory=list)
    state: str = ""


def _run_like_airflow(attempt: Callable[[], Any], max_tries: int = MAX_TRIES) -> Tries:
    """Call ``attempt`` as Airflow runs a task with retries: again after any error except
    AirflowFailException and AirflowSensorTimeout (which fail the task at once; raised here)."""
    tries = Tries()
    while tries.count < max_tries:
        tries.count += 1
        try:
            tries.result = attempt()
            return tries
        except (AirflowFailException, AirflowSensorTimeout):
            raise
        except Exception as exc:
            tries.errors.append(exc)
    raise AssertionError(f"still failing after {max_tries} tries: {[repr(e) for e in tries.errors]}")


@pytest.fixture(scope="session")
def run_like_airflow() -> Callable[..., Tries]:
    """``run_like_airflow(attempt, max_tries=3) -> Tries``: call ``attempt`` as Airflow retries a task
    (a loop, for tests whose call must run in the test's own frame; the fault matrix uses
    ``run_in_airflow``: Airflow's own retries)."""
    return _run_like_airflow


# The DAG that runs fault-matrix cells: dag.test() needs its dag_id in a DAG bundle, so a
# stub with that id lives in a DAGs folder of its own (the task itself comes from the test).
CELL_DAG_ID = "fault_matrix_cell"
_CELL_DAG_FILE = f'from airflow.sdk import DAG\n\ndag = DAG("{CELL_DAG_ID}", schedule=None)\n'


@pytest.fixture(scope="session")
def cell_dags_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("cell_dags")
    (folder / "fault_matrix_cell.py").write_text(_CELL_DAG_FILE)
    return str(folder)


@pytest.fixture(scope="module")
def run_in_airflow(cell_dags_folder) -> Callable[..., dict[str, Tries]]:
    """``run_in_airflow({task_id: attempt, ...}, max_tries=3) -> {task_id: Tries}``: one DAG run by
    ``dag.test()`` whose tasks call the attempts one after the other (each runs whatever the one
    before did), with ``retries=max_tries - 1`` and no retry delay. ``count`` is the task
    instance's try_number, ``state`` its final state, ``errors`` what each failed try raised.
    One DAG run costs about 3 s here, so a caller groups its attempts into few runs."""
    from airflow import settings
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, chain

    def run(attempts: dict[str, Callable[[], Any]], max_tries: int = MAX_TRIES) -> dict[str, Tries]:
        tries = {task_id: Tries() for task_id in attempts}

        def act(task_id: str) -> None:
            try:
                tries[task_id].result = attempts[task_id]()
            except BaseException as exc:
                tries[task_id].errors.append(exc)
                raise

        with DAG(CELL_DAG_ID, schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:
            tasks = [
                PythonOperator(
                    task_id=task_id,
                    python_callable=act,
                    op_args=[task_id],
                    retries=max_tries - 1,
                    retry_delay=datetime.timedelta(seconds=0),
                    trigger_rule="all_done",
                )
                for task_id in attempts
            ]
            chain(*tasks)
        patch = pytest.MonkeyPatch()
        # dag.test() writes the DAG through the dags-folder bundle, whose path is settings.DAGS_FOLDER
        # (read once at import): both point at the folder holding the cell DAG's id.
        patch.setattr(settings, "DAGS_FOLDER", cell_dags_folder)
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", cell_dags_folder)
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        try:
            instances = dag.test().get_task_instances()
        finally:
            patch.undo()
        for instance in instances:
            tries[instance.task_id].count = instance.try_number
            tries[instance.task_id].state = str(instance.state)
        return tries

    return run


@pytest.fixture
def short_timeout_connection(sandbox, monkeypatch) -> float:
    """The sandbox's connections in the environment, the GCP one with a 1 s request timeout (returned)."""
    connection = json.loads(sandbox.info["airflow_connections"]["google_cloud_default"])
    connection["extra"] = {**connection.get("extra", {}), "request_timeout": SHORT_REQUEST_TIMEOUT}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(connection))
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUGGINGFACE_DEFAULT", sandbox.info["airflow_connections"]["huggingface_default"]
    )
    return SHORT_REQUEST_TIMEOUT


def connection_env(sandbox) -> pytest.MonkeyPatch:
    """The sandbox's Airflow connections set in the environment; ``.undo()`` restores it."""
    patch = pytest.MonkeyPatch()
    for conn_id, value in sandbox.info["airflow_connections"].items():
        patch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    return patch


def new_namespace(cluster) -> str:
    """A fresh namespace on a test cluster (a ``ClusterRef`` from tests/plugins/conftest.py)."""
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook
    from gke_inference.ownership import K8S_LABELS

    name = f"res-{uuid.uuid4().hex[:8]}"
    ClusterKubernetesHook(**cluster.kwargs).apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": K8S_LABELS}}]
    )
    return name


@pytest.fixture(scope="session")
def serving_cluster(sandbox):
    """``(cluster, gateway_address)``: a RUNNING cluster serving the tutorial's model through its
    Gateway with the catch-all route (tutorial 4.2 state, no body-based routing)."""
    from tests.plugins.conftest import build_cluster
    from tests.plugins.test_checks import serve

    saved = connection_env(sandbox)
    try:
        cluster = build_cluster(sandbox, proxy_only_subnet=True)
        _serving_namespace[cluster] = new_namespace(cluster)
        address = serve(cluster, _serving_namespace[cluster], body_routing=False)
    finally:
        saved.undo()
    return cluster, address


_serving_namespace: dict[Any, str] = {}


@pytest.fixture(scope="session")
def serving_namespace(serving_cluster) -> str:
    """The namespace where ``serving_cluster`` serves the model (its pods, Gateway, pool, route)."""
    return _serving_namespace[serving_cluster[0]]
