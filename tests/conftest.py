"""Project-wide fixtures: one running sandbox for the whole session."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from sandbox.testing import running_sandbox

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def params_kept(dag) -> Generator[None, None, None]:
    """Give the DAG's and its tasks' Param objects back their values after the block.

    A run resolves its conf into the DAG's own Param objects (``process_params`` copies the Param
    references, and ``Param.resolve`` sets ``self.value``: airflow/sdk/definitions/param.py), so a
    second ``dag.test()`` in the same process would see the first run's value for every key its
    conf leaves out.
    """
    holders = [dag.params, *(task.params for task in dag.tasks)]
    params = list({id(p): p for held in holders for _, p in held.items()}.values())
    saved = [param.value for param in params]
    try:
        yield
    finally:
        for param, value in zip(params, saved, strict=True):
            param.value = value


@pytest.fixture(scope="session", autouse=True)
def dag_test_keeps_params() -> Iterator[None]:
    """Every ``dag.test()`` in the suite, whichever fixture parsed the DAG, starts from its defaults."""
    from airflow.sdk import DAG

    original = DAG.test

    @functools.wraps(original)
    def test(self, *args, **kwargs):
        with params_kept(self):
            return original(self, *args, **kwargs)

    DAG.test = test
    yield
    DAG.test = original


@pytest.fixture(scope="session")
def sandbox():
    """A SandboxHandle for a sandbox with the "instant" profile, shared by every test."""
    with running_sandbox(profile="instant") as handle:
        yield handle


@pytest.fixture
def clean_faults(sandbox):
    """Clear the sandbox's faults and behaviours after the test, whatever it added."""
    yield sandbox
    sandbox.faults_clear()


@pytest.fixture(scope="session")
def airflow_connections_env(sandbox):
    """The sandbox's Airflow connections (GCP and Hugging Face) in the environment for the session."""
    patch = pytest.MonkeyPatch()
    for conn_id, value in sandbox.info["airflow_connections"].items():
        patch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    yield sandbox.info["airflow_connections"]
    patch.undo()


@pytest.fixture(scope="module")
def dag(sandbox, airflow_connections_env):
    """The gke_inference_gateway DAG, parsed with the sandbox's connections and a 1 s first retry delay.
    The session's connections are set first: the environment this restores at the module's end keeps them."""
    yield from parsed_dag(sandbox)


def parsed_dag(sandbox):
    """Yield the DAG parsed with this sandbox's connections in the environment (read at run time),
    then restore the environment: the body of a module-scoped DAG fixture."""
    saved = dict(os.environ)
    os.environ["GKE_INFERENCE_RETRY_DELAY_SECONDS"] = "1"
    for conn_id, uri in sandbox.info["airflow_connections"].items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    yield bag.dags["gke_inference_gateway"]
    os.environ.clear()
    os.environ.update(saved)
