"""Fixture `lab`: a started data plane over its own object store, for the tutorial's objects."""

from __future__ import annotations

import pytest

from sandbox.dataplane.harness import DataPlaneHarness


@pytest.fixture
async def lab():
    async with DataPlaneHarness() as harness:
        yield harness
