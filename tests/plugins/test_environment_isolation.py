"""Two environments in one project: each DAG's teardown leaves the other's objects alone, counted
as DELETE requests in the twin's log (issue 15, section 6)."""

from __future__ import annotations

import pendulum
import pytest
from airflow.sdk import DAG

from gke_inference.hooks.compute_network import ComputeNetworkHook
from gke_inference.hooks.gke import ClusterStatus, GKEClusterHook
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.operators.workloads import ApplyManifestsOperator, DeleteManifestsOperator
from gke_inference.ownership import environment_dag_id
from gke_inference.params import build_params
from tests.plugins.conftest import GCP_CONN_ID, REGION, unique
from tests.plugins.test_operators_gcp import cluster_op, ensure_network_ops, wait_status

DEFAULTS = {name: param.value for name, param in build_params().items()}
MANIFEST = "model-inference-class.yaml"  # the ComputeClass, cluster-scoped


def in_dag(environment: str | None, operators) -> list:
    """``operators()`` as the environment's DAG holds them: the DAG id carries the environment."""
    with DAG(environment_dag_id(environment), schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        return operators()


def build(names: dict[str, str]) -> tuple:
    """The VPC, the node subnet and the cluster; then the Secret and the ComputeClass."""
    project = names["project"]
    cluster = {
        "project_id": project,
        "gcp_conn_id": GCP_CONN_ID,
        "location": REGION,
        "cluster_name": names["cluster"],
    }
    return (
        lambda: [*ensure_network_ops(project, names)[:2], cluster_op(project, names)],
        lambda: [
            HuggingFaceSecretOperator(
                task_id="secret", namespace="default", hf_conn_id="huggingface_default", **cluster
            ),
            ApplyManifestsOperator(task_id="compute_class", manifest=MANIFEST, values=DEFAULTS, **cluster),
        ],
    )


def teardown(names: dict[str, str]):
    gcp = {"project_id": names["project"], "gcp_conn_id": GCP_CONN_ID}
    cluster = {**gcp, "location": REGION, "cluster_name": names["cluster"]}
    return lambda: [
        DeleteManifestsOperator(
            task_id="workloads", namespace="default", values=DEFAULTS, manifest=MANIFEST, **cluster
        ),
        DeleteClusterOperator(task_id="cluster", delete_timeout=60, **cluster),
        DeleteSubnetworkOperator(task_id="subnet", subnetwork_name=names["subnet"], region=REGION, **gcp),
        DeleteNetworkOperator(task_id="network", network_name=names["network"], **gcp),
    ]


def deletes_since(sandbox, mark: int) -> list[str]:
    return [f"{e['api']} {e['path']}" for e in sandbox.requests()[mark:] if e["method"] == "DELETE"]


@pytest.fixture
def staging(airflow_connections_env, project) -> dict[str, str]:
    """Staging's VPC, subnet, RUNNING cluster, Secret and ComputeClass, made by staging's own tasks."""
    names = {"project": project, **{key: unique(key) for key in ("network", "subnet", "proxy", "cluster")}}
    gcp_side, kube_side = build(names)
    for operator in in_dag("staging", gcp_side):
        operator.execute({})
    wait_status(project, names["cluster"], ClusterStatus.RUNNING)
    for operator in in_dag("staging", kube_side):
        operator.execute({})
    return names


def test_another_environments_teardown_deletes_nothing_of_staging_and_staging_deletes_all(sandbox, staging):
    mark = len(sandbox.requests())
    for other in ("weekly", None):  # another environment, and the DAG of no environment
        workloads, cluster, subnet, network = (op.execute({}) for op in in_dag(other, teardown(staging)))
        assert set(workloads["not_owned"]) == {
            "Secret/default/hf-token",
            "ComputeClass/model-inference-class",
        }
        assert [r["reason"] for r in (cluster, subnet, network)] == ["not owned"] * 3
    assert deletes_since(sandbox, mark) == []
    project = staging["project"]
    assert GKEClusterHook(location=REGION).find_cluster(staging["cluster"], project) is not None
    assert ComputeNetworkHook().find_network(staging["network"], project) is not None

    # Its own teardown deletes all of it: the count above can see a DELETE.
    workloads, cluster, subnet, network = (op.execute({}) for op in in_dag("staging", teardown(staging)))
    assert set(workloads["deleted"]) == {"Secret/default/hf-token", "ComputeClass/model-inference-class"}
    assert [r["reason"] for r in (cluster, subnet, network)] == ["deleted"] * 3
    assert len(deletes_since(sandbox, mark)) >= 5


def test_an_ensure_of_another_environment_reports_staging_objects_as_not_its_own(staging):
    gcp_side, _ = build(staging)
    for other in ("weekly", None):  # the DAG of no environment: its labels are a subset of staging's
        network, subnet, cluster = (op.execute({}) for op in in_dag(other, gcp_side))
        assert (network["owned"], subnet["owned"], cluster["owned"]) == (False, False, False)
    network, subnet, cluster = (op.execute({}) for op in in_dag("staging", gcp_side))
    assert (network["owned"], subnet["owned"], cluster["owned"]) == (True, True, True)
