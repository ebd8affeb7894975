"""The CRDs GKE installs itself (v1 InferencePool from 1.34.0-gke.1626000) arrive after RUNNING."""

from __future__ import annotations

import dataclasses
import time

import pytest

from sandbox.kube import discovery
from sandbox.testing import wait_until
from tests.sandbox.conftest import start_cluster

POOL_CRD = "inferencepools.inference.networking.k8s.io"
POOL_GROUP, POOL_VERSION = "inference.networking.k8s.io", "v1"
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
DELAY = 1.0


@pytest.fixture
def managed_crds_delay(sandbox):
    """Clusters started in the test get their GKE-managed CRDs DELAY seconds after starting."""
    original = sandbox.sandbox.profile
    sandbox.run(setattr, sandbox.sandbox, "profile", dataclasses.replace(original, managed_crds_delay=DELAY))
    yield DELAY
    sandbox.run(setattr, sandbox.sandbox, "profile", original)


def served(sandbox, cluster) -> bool:
    """What discovery answers for the group (the CRD object is checked too: both must agree)."""
    in_discovery = (
        sandbox.run(discovery.resource_list, cluster.registry, POOL_GROUP, POOL_VERSION) is not None
    )
    crd = sandbox.run(cluster.store.get, *CRD, None, POOL_CRD)
    assert in_discovery == (crd is not None)
    return in_discovery


def wait_served(sandbox, cluster, timeout: float) -> float:
    started = time.monotonic()
    while not served(sandbox, cluster):
        assert time.monotonic() - started < timeout, f"{POOL_CRD} not served within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def cluster_of(sandbox):
    started = []

    def start(**settings):
        cluster = start_cluster(sandbox, **settings)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        sandbox.call(cluster.stop)


def test_the_pool_crd_reaches_discovery_after_the_profile_delay(sandbox, managed_crds_delay, cluster_of):
    started = time.monotonic()
    cluster = cluster_of()
    assert not served(sandbox, cluster)
    waited = wait_served(sandbox, cluster, timeout=10 * DELAY)
    assert time.monotonic() - started >= DELAY * 0.9
    assert waited > 0
    crd = sandbox.run(cluster.store.get, *CRD, None, POOL_CRD)
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    # The Gateway API CRDs and GatewayClasses are there from the start, as before.
    assert sandbox.run(cluster.registry.by_kind, "gateway.networking.k8s.io/v1", "Gateway") is not None


def test_an_older_cluster_never_gets_it(sandbox, managed_crds_delay, cluster_of):
    cluster = cluster_of(version="1.34.0-gke.1625999")
    # A newer cluster started after it: once that one has the CRD, the older one's turn has passed.
    witness = cluster_of()
    wait_served(sandbox, witness, timeout=10 * DELAY)
    assert not served(sandbox, cluster)


def test_the_late_behaviour_postpones_it_once_per_use(sandbox, clean_faults, cluster_of):
    # Instant profile (no delay): every postponement is the 1 s minimum step.
    name = "late-crds-counted"
    sandbox.faults_add(behaviour="managed_crds_late", cluster=name, count=2)
    started = time.monotonic()
    cluster = cluster_of(name=name)
    wait_served(sandbox, cluster, timeout=15)
    assert time.monotonic() - started >= 1.9  # two steps of 1 s: timers never fire early
    assert not [rule for rule in sandbox.run(sandbox.sandbox.faults.rules) if rule.get("name")]


def test_without_a_count_the_crd_never_arrives_until_the_behaviour_is_cleared(
    sandbox, clean_faults, cluster_of
):
    name = "late-crds-forever"
    late = sandbox.faults_add(behaviour="managed_crds_late", cluster=name)
    cluster = cluster_of(name=name)
    # GKE's installer came twice and was put off twice.
    wait_until(lambda: sandbox.fault_uses(late) >= 2, timeout=10)
    assert not served(sandbox, cluster)
    sandbox.faults_clear()
    wait_served(sandbox, cluster, timeout=5)


def test_a_crd_applied_before_gke_installs_it_is_kept(sandbox, managed_crds_delay, cluster_of):
    from sandbox.kube.builtin import gke_managed_crds

    cluster = cluster_of()
    mine = {**gke_managed_crds(cluster.version)[0], "metadata": {"name": POOL_CRD, "labels": {"by": "me"}}}
    sandbox.run(cluster.store.create, mine)
    # A cluster started after it: once that one has the CRD, this one's installer has run too.
    witness = cluster_of()
    wait_served(sandbox, witness, timeout=10 * DELAY)
    assert sandbox.run(cluster.store.get, *CRD, None, POOL_CRD)["metadata"]["labels"] == {"by": "me"}
