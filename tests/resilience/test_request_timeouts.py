"""Every request is bounded by the connection's request_timeout (issue 13 §4).

Each test stalls one kind of request in the twin well past the timeout and proves the client gave
up: the twin logs the stalled request with ``client_gone`` (the client had closed the connection
when the stall ended), and the call returned (or failed) before the stall was over. The fault
matrix's "slower than client timeout" column covers the other kinds (GCP calls, token fetches,
Kubernetes discovery, reads, applies, deletes, the CRD wait, the triggers' polls).
"""

from __future__ import annotations

import json
import time

import pytest

from gke_inference.hooks.huggingface import HuggingFaceHubHook
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.params import build_params
from sandbox.testing import wait_until
from tests.resilience.conftest import new_namespace

DEFAULTS = {name: param.value for name, param in build_params().items()}
TIMEOUT = 1.0  # the connections' request_timeout in these tests
STALL = TIMEOUT + 1.5  # how long the twin holds the request


def stalled_request(sandbox, mark: float, api: str, path: str) -> dict:
    """The request the stall held, once the twin logged it (at the end of the stall)."""

    def held() -> list[dict]:
        return [
            entry
            for entry in sandbox.requests(api)
            if entry["ts"] >= mark and entry.get("delayed") and path in entry["path"]
        ]

    return wait_until(held, timeout=STALL + 10)[0]


@pytest.fixture
def hub_connection_with_timeout(sandbox, monkeypatch) -> None:
    connection = json.loads(sandbox.info["airflow_connections"]["huggingface_default"])
    connection["extra"] = {**connection.get("extra", {}), "request_timeout": TIMEOUT}
    monkeypatch.setenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT", json.dumps(connection))


def test_a_stalled_hugging_face_hub_is_given_up_after_the_request_timeout(
    sandbox, hub_connection_with_timeout, clean_faults
):
    mark = time.time()
    sandbox.faults_add(api="hub", method="GET", path=r"/auth-check$", delay=STALL, count=1)

    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)timed? ?out") as raised:
        HuggingFaceHubHook().check_read_access(DEFAULTS["model_name"])
    waited = time.monotonic() - started

    assert waited < STALL - 0.5, f"the check waited {waited:.1f} s of a {STALL} s stall"
    assert stalled_request(sandbox, mark, "hub", "/auth-check")["client_gone"], type(raised.value)


def test_create_hf_secret_gives_up_a_stalled_kubernetes_discovery_and_goes_on(
    sandbox, serving_cluster, short_timeout_connection, clean_faults
):
    assert short_timeout_connection == TIMEOUT
    cluster, _ = serving_cluster
    namespace = new_namespace(cluster)
    mark = time.time()
    sandbox.faults_add(api="kube", method="GET", path=r"^/apis$", delay=STALL, count=1)

    started = time.monotonic()
    HuggingFaceSecretOperator(task_id="create_hf_secret", namespace=namespace, **cluster.kwargs).execute({})
    waited = time.monotonic() - started

    assert waited < STALL, f"the task waited {waited:.1f} s of a {STALL} s stall"
    assert stalled_request(sandbox, mark, "kube", "/apis")["client_gone"]
    created = [
        entry
        for entry in sandbox.requests("kube")
        if entry["ts"] >= mark and entry["path"].endswith(f"/namespaces/{namespace}/secrets/hf-token")
    ]
    assert [entry["status"] for entry in created if entry["method"] == "PATCH"] == [201]
