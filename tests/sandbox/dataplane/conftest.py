"""Fixture `lab`: a started data plane over its own object store, for the tutorial's objects."""

from __future__ import annotations

import pytest

from sandbox.dataplane.standalone import StandaloneLab


@pytest.fixture
async def lab():
    async with StandaloneLab() as standalone:
        yield standalone
