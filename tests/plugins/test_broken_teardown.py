"""Teardown works exactly when things are broken, and finality is one policy (issue 13, sections 1
and 5): a cluster that is ERROR, missing or being deleted has no workloads to delete, and no
Kubernetes request is tried; answers no retry can change fail at once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks._operations import poll_until
from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, ClusterStatus, GKEClusterHook
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.teardown_gcp import DeleteClusterOperator, DeleteNetworkOperator
from gke_inference.operators.workloads import DeleteManifestsOperator
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from gke_inference.params import build_params
from gke_inference.triggers.teardown import GatewayReleasedTrigger
from tests.plugins.conftest import GCP_CONN_ID, REGION, _add_project, unique

DEFAULTS = {name: param.value for name, param in build_params().items()}
CONTEXT: dict = {}  # operators read their arguments, never the run's params


def delete_workloads(cluster: dict) -> DeleteManifestsOperator:
    return DeleteManifestsOperator(task_id="w", namespace="default", values=DEFAULTS, **cluster)


def network_with_subnet(project: str, network: str, subnet: str, description: str = NETWORK_DESCRIPTION):
    hook = ComputeNetworkHook(gcp_conn_id=GCP_CONN_ID)
    hook.ensure_network(network, project, description=NETWORK_DESCRIPTION)
    spec = SubnetworkSpec(subnet, REGION, "10.0.0.0/20", {"pods": "10.4.0.0/14", "services": "10.8.0.0/20"})
    hook.ensure_subnetwork(spec, network, project, description=description)


@pytest.fixture
def broken(sandbox, airflow_connections_env, clean_faults) -> dict:
    """A project whose Autopilot cluster, the DAG's, ended in ERROR (the twin's cluster_error)."""
    project = unique("broken")
    sandbox.run(
        _add_project, sandbox.sandbox, project, ("compute.googleapis.com", "container.googleapis.com")
    )
    network_with_subnet(project, "vpc", "nodes")
    name = "inference-gateway-lab"
    sandbox.faults_add(behaviour="cluster_error", project=project, location=REGION, cluster=name)
    gke = GKEClusterHook(location=REGION, gcp_conn_id=GCP_CONN_ID)
    spec = AutopilotClusterSpec(name, "vpc", "nodes", "pods", "services", "RAPID", dict(GCP_LABELS))
    gke.create_cluster(spec.to_cluster(), project)
    poll_until(
        lambda: gke.get_cluster(name, project),
        lambda cluster: cluster.status == ClusterStatus.ERROR,
        description="cluster ERROR",
        timeout=20,
        poll_interval=0.1,
    )
    return {"project_id": project, "location": REGION, "cluster_name": name, "gcp_conn_id": GCP_CONN_ID}


def kube_requests(sandbox) -> int:
    return len(sandbox.requests("kube"))


def released(cluster: dict):
    trigger = GatewayReleasedTrigger(
        **cluster,
        namespace="default",
        gateway_name="inference-gateway",
        network_name="vpc",
        started_at=0,
        deadline=0,
    )
    return trigger.check(trigger.make_hook(), 0.0)


def set_status(sandbox, cluster: dict, status: str) -> None:
    key = (cluster["project_id"], REGION, cluster["cluster_name"])
    sandbox.run(sandbox.sandbox.gcp.clusters[key].__setitem__, "status", status)


def test_an_error_cluster_has_no_workloads_to_delete_and_is_deleted(broken, sandbox, capfd):
    before = kube_requests(sandbox)

    result = delete_workloads(broken).execute(CONTEXT)
    release = released(broken)
    deleted = DeleteClusterOperator(task_id="c", **broken).execute(CONTEXT)

    assert kube_requests(sandbox) == before, "the Kubernetes API of a broken cluster was tried"
    assert "Gateway/default/inference-gateway" in result["absent"]
    assert (
        "Nothing to delete on the cluster: cluster 'inference-gateway-lab' is ERROR" in capfd.readouterr().out
    )
    assert release.done and "is ERROR" in release.state
    assert deleted["reason"] == "deleted"
    assert GKEClusterHook(location=REGION).find_cluster(broken["cluster_name"], broken["project_id"]) is None


@pytest.mark.parametrize("status", ["STOPPING", "DEGRADED", "PROVISIONING"])
def test_a_cluster_being_deleted_degraded_or_provisioning_has_no_workloads_to_delete(broken, sandbox, status):
    set_status(sandbox, broken, status)
    before = kube_requests(sandbox)

    result = delete_workloads(broken).execute(CONTEXT)
    release = released(broken)

    assert kube_requests(sandbox) == before
    assert result == {"absent": result["absent"]} and result["absent"]
    assert release.done and status in release.state
    set_status(sandbox, broken, "ERROR")


def test_a_missing_cluster_has_no_workloads_to_delete(broken, sandbox):
    missing = {**broken, "cluster_name": "never-created"}
    before = kube_requests(sandbox)

    result = delete_workloads(missing).execute(CONTEXT)
    release = released(missing)

    assert kube_requests(sandbox) == before
    assert "Gateway/default/inference-gateway" in result["absent"]
    assert release.done and "does not exist" in release.state


# One finality policy


@pytest.mark.parametrize(("status", "count"), [(404, 1), (401, 2), (403, 1)])
def test_the_hf_secret_fails_at_once_on_answers_no_retry_changes(
    kube_cluster, namespace, sandbox, clean_faults, status, count
):
    path = f"/namespaces/{namespace}/secrets/hf-token"
    sandbox.faults_add(api="kube", method="PATCH", path=path, status=status, count=count)
    op = HuggingFaceSecretOperator(task_id="hf", namespace=namespace, **kube_cluster.kwargs)
    with pytest.raises(AirflowFailException, match="tutorial 3.2"):
        op.execute({})


def test_a_vpc_holding_a_subnet_the_dag_did_not_create_is_kept_at_once(project, sandbox):
    network_with_subnet(project, "shared-vpc", "theirs", description="made by someone else")
    before = len(sandbox.requests())

    with pytest.raises(AirflowFailException) as caught:
        DeleteNetworkOperator(task_id="n", project_id=project, network_name="shared-vpc").execute(CONTEXT)

    message = str(caught.value)
    assert f"{REGION}/theirs" in message and "kept on purpose" in message
    deletes = [e for e in sandbox.requests()[before:] if e["method"] == "DELETE"]
    assert deletes == []
    assert ComputeNetworkHook().find_network("shared-vpc", project) is not None
