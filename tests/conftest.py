"""Project-wide fixtures: one running sandbox for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.testing import running_sandbox

REPO = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="module")
def dag(sandbox):
    """The gke_inference_gateway DAG, parsed with the sandbox's connections and a 1 s first retry delay."""
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
