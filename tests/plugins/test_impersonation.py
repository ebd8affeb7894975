"""Impersonation works the same on every path: a GCP operator, the cluster sensor's first look, an
apply through the Kubernetes hook and the polling triggers all fetch a token from the twin's IAM
Credentials API (at the connection's ``api_endpoint``) and call with it; a refusal fails at once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.cluster_target import ClusterTarget
from gke_inference.hooks._base import EndpointAwareGoogleHook, ImpersonationRefusedError
from gke_inference.operators.project_network import EnsureNetworkOperator
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.triggers.kubernetes import PodsReadyTrigger
from gke_inference.triggers.teardown import GatewayReleasedTrigger
from tests.plugins.conftest import GCP_CONN_ID, unique

pytestmark = pytest.mark.usefixtures("airflow_connections_env")

SERVED_APIS = ("compute", "container", "serviceusage", "kube")


def deployer(project_id: str) -> str:
    return f"deployer@{project_id}.iam.gserviceaccount.com"


@pytest.fixture
def log_since(sandbox):
    """``log_since()``: the request-log entries since the test began (after its fixtures)."""
    mark = len(sandbox.requests())
    return lambda: sandbox.requests()[mark:]


@pytest.fixture
def refused(sandbox, kube_cluster):
    """A service account of the cluster's project that the connection may not impersonate."""
    account = f"refused-{unique('sa')}@{kube_cluster.project_id}.iam.gserviceaccount.com"
    sandbox.run(sandbox.sandbox.tokens.impersonation_refused.add, account)
    yield account
    sandbox.run(sandbox.sandbox.tokens.impersonation_refused.discard, account)


def assert_impersonated(entries: list[dict], account: str, apis: set[str]) -> None:
    """One token minted for ``account``, and every call to ``apis`` made with it."""
    minted = [e for e in entries if e["api"] == "iamcredentials"]
    assert [e["status"] for e in minted] == [200]
    calls = [e for e in entries if e["api"] in SERVED_APIS]
    assert {e["api"] for e in calls} == apis
    assert {e.get("principal") for e in calls} == {account}


def test_a_gcp_operator_calls_compute_as_the_impersonated_account(sandbox, project, log_since):
    EnsureNetworkOperator(
        task_id="network",
        network_name=unique("vpc"),
        project_id=project,
        gcp_conn_id=GCP_CONN_ID,
        impersonation_chain=[deployer(project)],
    ).execute({})
    assert_impersonated(log_since(), deployer(project), {"compute"})


def test_the_cluster_sensors_first_look_is_impersonated(kube_cluster, log_since):
    account = deployer(kube_cluster.project_id)
    result = ClusterRunningSensor(task_id="wait", impersonation_chain=account, **kube_cluster.kwargs).execute(
        {}
    )
    assert result["status"] == "RUNNING"
    assert_impersonated(log_since(), account, {"container"})


def test_an_apply_through_the_kubernetes_hook_is_impersonated(kube_cluster, namespace, log_since):
    account = deployer(kube_cluster.project_id)
    target = ClusterTarget(**kube_cluster.kwargs, impersonation_chain=[account])
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": namespace}}
    assert [r.action for r in target.kube_hook().apply([config_map])] == ["created"]
    # The endpoint comes from the Container API, the rest from the cluster: one token for both.
    assert_impersonated(log_since(), account, {"container", "kube"})


def first_event(trigger) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 30))


def test_the_pods_triggers_look_is_impersonated(kube_cluster, namespace, log_since):
    account = deployer(kube_cluster.project_id)
    now = time.time()
    trigger = PodsReadyTrigger(
        **kube_cluster.kwargs,
        impersonation_chain=[account],
        namespace=namespace,
        label_selector="app=none",
        replicas=1,
        started_at=now,
        deadline=now,  # one look, then the timeout event
    )
    assert first_event(trigger)["status"] == "timeout"
    assert_impersonated(log_since(), account, {"container", "kube"})


def test_the_released_triggers_look_is_impersonated(kube_cluster, namespace, log_since):
    account = deployer(kube_cluster.project_id)
    now = time.time()
    trigger = GatewayReleasedTrigger(
        **kube_cluster.kwargs,
        impersonation_chain=[account],
        namespace=namespace,
        gateway_name="never-created",
        network_name=kube_cluster.network_name,
        started_at=now,
        deadline=now + 20,
    )
    assert first_event(trigger)["status"] == "success"
    # Its Kubernetes hook and its load-balancer hook each fetch a token for the account.
    entries = log_since()
    assert [e["status"] for e in entries if e["api"] == "iamcredentials"] == [200, 200]
    calls = [e for e in entries if e["api"] in SERVED_APIS]
    assert {e["api"] for e in calls} == {"container", "kube", "compute"}
    assert {e.get("principal") for e in calls} == {account}


def test_a_refused_impersonation_fails_the_task_at_once_naming_connection_and_account(
    project, refused, log_since
):
    with pytest.raises(AirflowFailException) as failed:
        EnsureNetworkOperator(
            task_id="network",
            network_name=unique("vpc"),
            project_id=project,
            gcp_conn_id=GCP_CONN_ID,
            impersonation_chain=[refused],
        ).execute({})
    message = str(failed.value)
    assert f"connection {GCP_CONN_ID!r}" in message.lower() and repr(refused) in message
    assert "iam.serviceAccounts.getAccessToken" in message and "ya29." not in message
    entries = log_since()
    assert [e["status"] for e in entries if e["api"] == "iamcredentials"] == [403]  # no retry
    assert [e for e in entries if e["api"] in SERVED_APIS] == []


def test_a_refused_impersonation_on_the_kubernetes_path_names_the_account(kube_cluster, refused, log_since):
    target = ClusterTarget(**kube_cluster.kwargs, impersonation_chain=refused)
    with pytest.raises(ImpersonationRefusedError, match=refused):
        target.kube_hook().list("v1", "ConfigMap", namespace="default")
    assert [e["status"] for e in log_since() if e["api"] == "iamcredentials"] == [403]


def test_without_api_endpoint_impersonation_stays_on_googles_endpoint(sandbox, monkeypatch):
    connection = json.loads(sandbox.info["airflow_connections"]["google_cloud_default"])
    del connection["extra"]["api_endpoint"]
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_NO_ENDPOINT", json.dumps(connection))
    hook = EndpointAwareGoogleHook(gcp_conn_id="google_no_endpoint", impersonation_chain=deployer("p-1234"))
    credentials = hook.get_credentials()
    assert credentials.service_account_email == deployer("p-1234")
    assert (
        credentials._iam_endpoint_override is None
    )  # google-auth then posts to iamcredentials.googleapis.com
