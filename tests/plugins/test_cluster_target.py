"""The one cluster target: every task, trigger and check that reaches a cluster carries the
impersonation chain to both the Container API hook and the Kubernetes API hook."""

from __future__ import annotations

import pytest
from airflow.sdk.module_loading import import_string

from gke_inference.cluster_target import ClusterTarget
from gke_inference.operators.checks import ChatCompletionCheckOperator
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.workloads import ApplyManifestsOperator, DeleteManifestsOperator
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.sensors.kubernetes import GatewayAddressSensor, PodsReadySensor
from gke_inference.sensors.teardown import GatewayReleasedSensor
from gke_inference.triggers.cluster import ClusterRunningTrigger
from gke_inference.triggers.kubernetes import PodsReadyTrigger
from gke_inference.triggers.teardown import GatewayReleasedTrigger
from tests.plugins.conftest import GCP_CONN_ID

# Hooks read their connection when built: the sandbox's, from the environment.
pytestmark = pytest.mark.usefixtures("airflow_connections_env")

CHAIN = ["deployer@p.iam.gserviceaccount.com"]
CLUSTER = {
    "cluster_name": "c",
    "location": "us-central1",
    "project_id": "p",
    "gcp_conn_id": GCP_CONN_ID,
    "impersonation_chain": CHAIN,
}


def assert_hooks_impersonate(target: ClusterTarget) -> None:
    kube = target.kube_hook()
    assert kube.target == target
    assert kube.gke_hook.impersonation_chain == CHAIN  # the Kubernetes path's token comes from here
    assert target.gke_hook().impersonation_chain == CHAIN


@pytest.mark.parametrize(
    "task",
    [
        lambda: ApplyManifestsOperator(task_id="t", manifest="gateway.yaml", values={}, **CLUSTER),
        lambda: HuggingFaceSecretOperator(task_id="t", namespace="n", **CLUSTER),
        lambda: DeleteManifestsOperator(task_id="t", namespace="n", values={}, **CLUSTER),
        lambda: ClusterRunningSensor(task_id="t", **CLUSTER),
        lambda: PodsReadySensor(task_id="t", label_selector="app=x", wait_timeout=5, **CLUSTER),
        lambda: GatewayAddressSensor(task_id="t", gateway_name="g", wait_timeout=5, **CLUSTER),
        lambda: GatewayReleasedSensor(
            task_id="t", namespace="n", gateway_name="g", network_name="v", **CLUSTER
        ),
    ],
)
def test_every_cluster_task_builds_hooks_that_impersonate(task):
    op = task()
    assert op.cluster_target == ClusterTarget(**CLUSTER)
    assert_hooks_impersonate(op.cluster_target)
    assert "impersonation_chain" in op.template_fields


def test_the_gateway_check_names_what_vanished_with_the_same_identity(monkeypatch):
    seen = []
    monkeypatch.setattr("gke_inference.vanished.what_vanished", lambda hook, *a, **k: seen.append(hook))
    ChatCompletionCheckOperator(task_id="t", gateway_address="1.2.3.4", model="m", **CLUSTER).what_vanished()
    assert_hooks_impersonate(seen[0].target)


@pytest.mark.parametrize(
    ("trigger_class", "extra"),
    [
        (ClusterRunningTrigger, {}),
        (PodsReadyTrigger, {"namespace": "n", "label_selector": "app=x", "replicas": 1}),
        (GatewayReleasedTrigger, {"namespace": "n", "gateway_name": "g", "network_name": "v"}),
    ],
)
def test_triggers_carry_the_chain_through_serialization(trigger_class, extra):
    trigger = trigger_class(**CLUSTER, started_at=1.0, deadline=2.0, **extra)
    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)

    assert kwargs["impersonation_chain"] == CHAIN and rebuilt.serialize() == (classpath, kwargs)
    assert_hooks_impersonate(rebuilt.target)
