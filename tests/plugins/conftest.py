"""Fixtures for the plugin component tests: an Airflow GCP connection to the sandbox, fresh projects.

Tests share one sandbox, so each test works in its own GCP project (or with uuid-suffixed names)
and leaves other tests' resources alone.
"""

from __future__ import annotations

import uuid

import pytest

from sandbox.gcp.state import Project, project_number_for

GCP_CONN_ID = "google_cloud_default"
REGION = "us-central1"


def unique(prefix: str) -> str:
    """A GCP-valid resource name, unique in the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _add_project(sandbox, project_id: str, services: tuple[str, ...]) -> None:
    project = Project(project_id, project_number_for(project_id))
    for service in services:
        project.enable(service)
    sandbox.gcp.projects[project_id] = project


@pytest.fixture
def gcp_connection(sandbox, monkeypatch) -> str:
    """The sandbox's google_cloud_default connection, as Airflow reads it from the environment."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", sandbox.info["airflow_connections"]["google_cloud_default"]
    )
    return GCP_CONN_ID


@pytest.fixture
def new_project(sandbox, gcp_connection) -> str:
    """A project as GCP creates it: only the default services are enabled."""
    project_id = unique("proj")
    sandbox.run(_add_project, sandbox.sandbox, project_id, ())
    return project_id


@pytest.fixture
def project(sandbox, gcp_connection) -> str:
    """A project with the Compute Engine and Kubernetes Engine APIs already enabled."""
    project_id = unique("proj")
    services = ("compute.googleapis.com", "container.googleapis.com")
    sandbox.run(_add_project, sandbox.sandbox, project_id, services)
    return project_id
