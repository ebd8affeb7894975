"""What one task costs above an empty one (issue 14, "Bring the overhead down"): a Kubernetes-
applying task makes one connection lookup, fetches one access token and runs one API discovery,
however many objects and kinds it touches; a Compute task imports only the Compute clients it uses.
Counted in the twin's request log, at ``BaseHook.get_connection`` and in ``sys.modules``; the
seconds are bench/task_profile.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from airflow.sdk.bases.hook import BaseHook

from gke_inference.operators.workloads import ApplyManifestsOperator
from tests.plugins.conftest import unique
from tests.plugins.test_discovery_count import DISCOVERY_PATH
from tests.plugins.test_impersonation import deployer
from tests.plugins.test_kube_operators import values_for

TOKEN_PATH = "/token"


@pytest.fixture
def connection_lookups(monkeypatch) -> list[str]:
    """The connection ids looked up from now on (in a worker, each is a call to the API server)."""
    looked_up: list[str] = []
    original = BaseHook.get_connection.__func__

    def get_connection(cls, conn_id):
        looked_up.append(conn_id)
        return original(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(get_connection))
    return looked_up


def tokens_fetched(entries: list[dict]) -> tuple[int, int]:
    """OAuth tokens for the connection's key, and IAM Credentials tokens for an impersonated account."""
    for_the_key = sum(e["method"] == "POST" and e["path"] == TOKEN_PATH for e in entries)
    impersonated = sum(e["path"].endswith(":generateAccessToken") for e in entries)
    return for_the_key, impersonated


@pytest.mark.parametrize("impersonated", [False, True], ids=["key", "impersonated"])
def test_one_kubernetes_task_looks_up_once_fetches_one_token_and_discovers_once(
    impersonated, kube_cluster, namespace, sandbox, connection_lookups
):
    chain = deployer(kube_cluster.project_id) if impersonated else None
    # Two manifests, three group versions (core, gateway.networking.k8s.io, inference), many objects.
    apply_and_read = ApplyManifestsOperator(
        task_id="apply",
        manifest=["gateway.yaml", "inferencepool"],
        values=values_for(namespace=namespace),
        impersonation_chain=chain,
        **kube_cluster.kwargs,
    )
    mark = time.time()
    result = apply_and_read.execute({})
    apply_and_read.kube_hook.list("v1", "Pod", namespace)  # later calls in the same task reuse it all
    apply_and_read.kube_hook.gke_hook.get_cluster(kube_cluster.cluster_name, kube_cluster.project_id)
    time.sleep(0.1)  # the twin logs a request once it has answered it
    entries = [e for e in sandbox.requests() if e["ts"] >= mark]

    assert len(result["created"]) > 5
    assert connection_lookups == [kube_cluster.gcp_conn_id]
    # The key's token; with impersonation, the key's token calls IAM once for the account's token.
    assert tokens_fetched(entries) == (1, 1 if impersonated else 0)
    kube_gets = [e["path"] for e in entries if e["api"] == "kube" and e["method"] == "GET"]
    discovery = [path for path in kube_gets if DISCOVERY_PATH.match(path)]
    assert discovery.count("/apis") == 1 and discovery.count("/version") == 1, discovery
    assert len(discovery) == len(set(discovery)), f"a discovery document was fetched twice: {discovery}"
    if impersonated:
        assert {e.get("principal") for e in entries if e["api"] == "kube"} == {chain}


CHILD = """
import json, sys
from airflow.sdk import DAG
from gke_inference.operators.project_network import EnsureNetworkOperator

with DAG("overhead", schedule=None):
    task = EnsureNetworkOperator(task_id="network", network_name=sys.argv[1], project_id=sys.argv[2])
task.execute({})
services = {m.split(".")[4] for m in sys.modules if m.startswith("google.cloud.compute_v1.services.")}
from google.cloud import compute_v1  # elsewhere in the process: the whole package, same classes

same = compute_v1.NetworksClient is compute_v1.services.networks.NetworksClient
print(json.dumps({"services": sorted(services), "all": len(compute_v1.__all__), "same": same}))
"""


def test_a_compute_task_loads_only_the_compute_clients_it_uses(project, sandbox):
    env = {
        **os.environ,
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": sandbox.info["airflow_connections"]["google_cloud_default"],
    }
    command = [sys.executable, "-c", CHILD, unique("vpc"), project]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # the networks client and the global operations client it waits with, of the ~130 the package has
    assert report["services"] == ["global_operations", "networks"]
    assert report["all"] > 1000 and report["same"]
