"""Fixture `lab`: a cluster's object store with a started DataPlane watching it."""

from __future__ import annotations

import types

import pytest
from dataplane_lab import LabCluster, LoopbackAddresses

from sandbox.core.profiles import get_profile
from sandbox.dataplane import DataPlane
from sandbox.kube.store import ObjectStore


@pytest.fixture
async def lab():
    host = types.SimpleNamespace(profile=get_profile("instant"))
    cluster = types.SimpleNamespace(store=ObjectStore())
    dataplane = DataPlane(host, cluster)
    await dataplane.start()
    try:
        yield LabCluster(cluster.store, dataplane, LoopbackAddresses())
    finally:
        await dataplane.stop()
