"""Whole-DAG runs on a sandbox with GKE's timing: tokens expire during every wait, GKE's own CRDs
arrive late, and the run still succeeds with no failed try.

Its own sandbox ("realistic" profile, access tokens good for TOKEN_LIFETIME seconds), not the
session one. Edge cases live at the hook and trigger level (tests/plugins/test_token_expiry.py,
tests/plugins/test_kube_operators.py); only the whole-run claims are here.
"""

from __future__ import annotations

import time

import pytest

from sandbox.testing import running_sandbox
from tests.conftest import parsed_dag

pytestmark = pytest.mark.dag

# Shorter than every wait of the realistic profile (cluster 6 s, model 5 s, Gateway 3 s).
TOKEN_LIFETIME = 2.0
LATE_CLUSTER = "late-crds-cluster"
POOL_CRD = "inferencepools.inference.networking.k8s.io"
LATE_STEPS = (
    20  # behaviour uses: GKE's CRD comes ~21 s after RUNNING, several 5 s polls after the task starts
)


@pytest.fixture(scope="module")
def slow_sandbox():
    with running_sandbox(profile="realistic", token_lifetime=TOKEN_LIFETIME) as handle:
        yield handle


@pytest.fixture(scope="module")
def long_run_dag(slow_sandbox):
    """The DAG with connections to the module's sandbox (read from the environment at run time)."""
    yield from parsed_dag(slow_sandbox)


def requests_since(handle, started: float, api: str | None = None) -> list[dict]:
    # By time, not index: the request log keeps only its latest entries.
    return [e for e in handle.requests(api) if e["ts"] >= started]


def run(dag, **conf):
    dag_run = dag.test(run_conf={"gateway_port": 8080, **conf})
    instances = dag_run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    assert dag_run.state == "success", states
    ran = [ti for ti in instances if str(ti.state) == "success"]
    assert ran, states
    # No task failed a try: every task that ran succeeded on its first.
    assert {ti.task_id: ti.try_number for ti in ran if ti.try_number != 1} == {}
    return dag_run, states


def assert_each_401_answered_by_a_refresh(entries: list[dict]) -> None:
    for index, entry in enumerate(entries):
        if entry["status"] != 401:
            continue
        same = [e for e in entries[index + 1 :] if (e["api"], e["path"]) == (entry["api"], entry["path"])]
        assert same and same[0]["status"] < 400, f"401 on {entry['api']} {entry['path']} not answered"


def test_tokens_expire_during_every_wait_and_the_late_pool_crd_is_waited_for_with_no_retry(
    long_run_dag, slow_sandbox
):
    """One run proves both whole-run claims (one run, not two: a realistic-profile run costs ~55 s):
    access tokens expire during every wait and are refreshed, and GKE's InferencePool CRD arrives
    late and the run waits for it; no task needs a second try."""
    slow_sandbox.faults_add(behaviour="managed_crds_late", cluster=LATE_CLUSTER, count=LATE_STEPS)
    conf = {
        "region": "europe-west4",
        "network_name": "late-vpc",
        "subnet_name": "late-subnet",
        "proxy_subnet_name": "late-proxy",
        "cluster_name": LATE_CLUSTER,
    }
    started = time.time()
    dag_run, states = run(long_run_dag, **conf)
    entries = requests_since(slow_sandbox, started)

    # Tokens: the Kubernetes path fetched new access tokens as they expired, and every refusal
    # of an expired one was answered by a refresh and a retry that passed.
    minted = [e for e in entries if e["api"] == "oauth" and e["status"] == 200]
    assert len(minted) > 1
    refused = [e for e in entries if e["status"] == 401]
    assert refused, "no token outlived its lifetime: the test proves nothing"
    assert_each_401_answered_by_a_refresh(entries)

    # The late CRD: absent at the task's own look and at more than one poll of its deferred wait,
    # then served.
    looks = [
        e["status"]
        for e in entries
        if e["api"] == "kube"
        and e["method"] == "GET"
        and e["path"].endswith(f"/customresourcedefinitions/{POOL_CRD}")
    ]
    assert looks.count(404) >= 3 and looks[-1] == 200, looks
    assert states["cluster.install_crds_objective_only"] == "success"
    assert states["cluster.install_crds_full_set"] == "skipped"
    assert slow_sandbox.run(slow_sandbox.sandbox.faults.rules) == []  # every postponement was used
