"""Access tokens that expire or are refused mid-run: every path refreshes, a bad key fails at once.

Against the session sandbox; a fixture shortens its token lifetime for one test at a time.
"""

from __future__ import annotations

import json
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks._base import CredentialsRefusedError
from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import GKEClusterHook
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.ownership import NETWORK_DESCRIPTION
from gke_inference.params import build_params
from gke_inference.triggers.cluster import ClusterRunningTrigger
from sandbox.core.auth import ServiceAccountKey
from tests.plugins.conftest import REGION, unique
from tests.plugins.test_cluster_trigger import first_event, start_cluster

FOREIGN_CONN_ID = "google_cloud_foreign"
SHORT_LIFETIME = 1.0
DEFAULTS = {name: param.value for name, param in build_params().items()}


@pytest.fixture
def short_token_lifetime(sandbox):
    """Tokens minted, and self-signed JWTs made, during the test are good for one second."""
    sandbox.run(setattr, sandbox.sandbox.tokens, "lifetime", SHORT_LIFETIME)
    yield SHORT_LIFETIME
    sandbox.run(setattr, sandbox.sandbox.tokens, "lifetime", 3600)


@pytest.fixture
def foreign_connection(sandbox, monkeypatch, tmp_path):
    """A GCP connection to the sandbox whose key the sandbox never issued; returns the key's secrets."""
    key = ServiceAccountKey.generate(sandbox.info["project_id"])
    key_json = key.key_file_json(token_uri=f"{sandbox.info['api_endpoint']}/token")
    key_path = tmp_path / "foreign-key.json"
    key_path.write_text(json.dumps(key_json))
    extra = {"key_path": str(key_path), "project": sandbox.info["project_id"]}
    extra["api_endpoint"] = sandbox.info["api_endpoint"]
    connection = {"conn_type": "google_cloud_platform", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{FOREIGN_CONN_ID.upper()}", json.dumps(connection))
    return key_json


def since(sandbox, mark: float, api: str | None = None) -> list[dict]:
    """Requests logged since `mark` (by time: the log keeps only its latest entries)."""
    return [e for e in sandbox.requests(api) if e["ts"] >= mark]


def assert_no_secret(message: str, key_json: dict | None = None) -> None:
    assert "ya29." not in message and "eyJ" not in message and "PRIVATE KEY" not in message
    if key_json:
        assert key_json["private_key_id"] not in message


def assert_each_401_answered_by_a_refresh(entries: list[dict]) -> None:
    """Every 401 is followed by the same request succeeding (the client refreshed and tried again)."""
    for index, entry in enumerate(entries):
        if entry["status"] != 401:
            continue
        same = [e for e in entries[index + 1 :] if (e["api"], e["path"]) == (entry["api"], entry["path"])]
        assert same and same[0]["status"] < 400, f"401 on {entry['path']} was not followed by a success"


# Kubernetes API: tokens from the token endpoint


def test_kubernetes_hook_refreshes_before_an_expired_token_is_sent(
    sandbox, kube_cluster, short_token_lifetime
):
    hook = kube_cluster.hook()
    mark = time.time()
    hook.list("v1", "Namespace")
    time.sleep(SHORT_LIFETIME * 1.5)  # the first token is dead now
    hook.list("v1", "Namespace")
    minted = [e for e in since(sandbox, mark, "oauth") if e["status"] == 200]
    assert len(minted) >= 2
    assert [e for e in since(sandbox, mark, "kube") if e["status"] == 401] == []


def test_kubernetes_hook_answers_a_401_with_a_new_token_not_an_error(sandbox, kube_cluster):
    hook = kube_cluster.hook()
    hook.list("v1", "Namespace")
    token = hook.dynamic_client.client.configuration.api_key["BearerToken"]
    sandbox.run(sandbox.sandbox.tokens.revoke, token)  # google-auth still counts it valid for an hour
    mark = time.time()

    assert hook.list("v1", "Namespace")

    kube = since(sandbox, mark, "kube")
    assert [e["status"] for e in kube].count(401) == 1
    assert_each_401_answered_by_a_refresh(kube)
    assert [e["status"] for e in since(sandbox, mark, "oauth")] == [200]
    assert hook.dynamic_client.client.configuration.api_key["BearerToken"] != token


def test_a_cluster_that_refuses_fresh_tokens_fails_at_once_naming_the_connection(
    sandbox, kube_cluster, clean_faults
):
    hook = kube_cluster.hook()
    hook.list("v1", "Namespace")
    sandbox.faults_add(api="kube", path="^/api/v1/namespaces$", status=401)
    mark = time.time()
    started = time.monotonic()

    with pytest.raises(CredentialsRefusedError) as refused:
        hook.list("v1", "Namespace")

    assert time.monotonic() - started < 5  # no backoff: a 401 is not retried as transient
    assert [e["status"] for e in since(sandbox, mark, "kube")] == [401, 401]  # one fresh token, once
    message = str(refused.value)
    assert "'google_cloud_default'" in message and kube_cluster.cluster_name in message
    assert_no_secret(message)


def test_a_token_endpoint_that_refuses_the_key_fails_at_once_naming_the_connection(
    sandbox, kube_cluster, clean_faults
):
    sandbox.faults_add(api="oauth", path="^/token$", status=400)
    mark = time.time()
    with pytest.raises(CredentialsRefusedError, match="'google_cloud_default'.*token endpoint") as refused:
        kube_cluster.hook().list("v1", "Namespace")
    assert len(since(sandbox, mark, "oauth")) == 1
    assert since(sandbox, mark, "kube") == []
    assert_no_secret(str(refused.value))


# Google APIs: self-signed JWTs


async def test_cluster_trigger_outlives_its_tokens(
    sandbox, project, slow_cluster_provisioning, short_token_lifetime
):
    network, subnetwork = _subnet(project)
    cluster = start_cluster(project, network, subnetwork)
    mark = time.time()
    trigger = ClusterRunningTrigger(
        cluster_name=cluster,
        location=REGION,
        project_id=project,
        poll_interval=0.2,
        started_at=mark,
        deadline=mark + 60,
    )

    event = await first_event(trigger)

    assert event["status"] == "success"
    container = since(sandbox, mark, "container")
    assert [e["status"] for e in container].count(401) >= 1  # the provisioning outlived a token
    assert_each_401_answered_by_a_refresh(container)


def _subnet(project: str) -> tuple[str, str]:
    hook = ComputeNetworkHook()
    network, subnet = unique("vpc"), unique("nodes")
    hook.ensure_network(network, project, description=NETWORK_DESCRIPTION)
    ranges = {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"}
    spec = SubnetworkSpec(subnet, REGION, "10.0.0.0/20", ranges)
    hook.ensure_subnetwork(spec, network, project, description=NETWORK_DESCRIPTION)
    return network, subnet


def test_a_key_google_does_not_know_fails_at_once_naming_the_connection(sandbox, foreign_connection):
    mark = time.time()
    started = time.monotonic()

    with pytest.raises(CredentialsRefusedError) as refused:
        GKEClusterHook(location=REGION, gcp_conn_id=FOREIGN_CONN_ID).get_cluster("any-cluster")

    assert time.monotonic() - started < 5
    # google-auth makes a new JWT on a 401 and tries again, twice (transport.DEFAULT_MAX_REFRESH_ATTEMPTS);
    # then nothing retries it.
    assert [e["status"] for e in since(sandbox, mark, "container")] == [401, 401, 401]
    message = str(refused.value)
    assert f"{FOREIGN_CONN_ID!r}" in message and "401" in message
    assert_no_secret(message, foreign_connection)


def test_an_operator_with_a_refused_key_fails_without_retry(sandbox, kube_cluster, foreign_connection):
    operator = ApplyManifestsOperator(
        task_id="apply",
        manifest="model-inference-class.yaml",
        values=DEFAULTS,
        **{**kube_cluster.kwargs, "gcp_conn_id": FOREIGN_CONN_ID},
    )
    with pytest.raises(AirflowFailException, match=FOREIGN_CONN_ID) as failed:
        operator.execute({})
    assert_no_secret(str(failed.value), foreign_connection)


def test_the_twin_refuses_what_it_revoked_and_what_outlived_its_lifetime(sandbox, short_token_lifetime):
    tokens = sandbox.sandbox.tokens
    revoked, fresh = sandbox.run(tokens.mint), sandbox.run(tokens.mint)
    sandbox.run(tokens.revoke, revoked)
    assert not sandbox.run(tokens.is_valid, revoked)
    assert sandbox.run(tokens.is_valid, fresh)
    time.sleep(SHORT_LIFETIME * 1.2)
    assert not sandbox.run(tokens.is_valid, fresh)
