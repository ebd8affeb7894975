"""Project-wide fixtures: one running sandbox for the whole session."""

from __future__ import annotations

import pytest

from sandbox.testing import running_sandbox


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
