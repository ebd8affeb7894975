"""Teardown works exactly when things are broken: a cluster that ended in ERROR is torn down with
its network, and a rebuild builds a fresh environment in its place (issue 13, section 1)."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import process_params

from gke_inference.hooks._operations import poll_until
from gke_inference.hooks.gke import ClusterStatus, GKEClusterHook
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.params import build_params
from sandbox.testing import unique_name

pytestmark = pytest.mark.dag
REGION = "us-central1"


def environment() -> dict:
    """Params that give the run its own VPC, subnets and cluster in the shared sandbox."""
    return {
        "network_name": unique_name("bt-vpc"),
        "subnet_name": unique_name("bt-subnet"),
        "proxy_subnet_name": unique_name("bt-proxy"),
        "cluster_name": unique_name("bt"),
        "gateway_port": 8080,
    }


def states_of(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def build_with_an_error_cluster(conf: dict, project: str) -> None:
    """What an ensure run leaves when GKE puts the new cluster in ERROR: the VPC, both subnets and
    the cluster, all the DAG's (built with the DAG's own operators, without the run's fixed cost)."""
    common = {"project_id": project, "gcp_conn_id": "google_cloud_default"}
    EnableApisOperator(task_id="a", **common).execute({})
    EnsureNetworkOperator(task_id="n", network_name=conf["network_name"], **common).execute({})
    EnsureSubnetworkOperator(
        task_id="s",
        network_name=conf["network_name"],
        subnetwork_name=conf["subnet_name"],
        region=REGION,
        ip_cidr_range="10.0.0.0/20",
        secondary_ranges={"pods": "10.4.0.0/14", "services": "10.8.0.0/20"},
        **common,
    ).execute({})
    EnsureSubnetworkOperator(
        task_id="p",
        network_name=conf["network_name"],
        subnetwork_name=conf["proxy_subnet_name"],
        region=REGION,
        ip_cidr_range="10.129.0.0/23",
        purpose="REGIONAL_MANAGED_PROXY",
        role="ACTIVE",
        **common,
    ).execute({})
    EnsureAutopilotClusterOperator(
        task_id="c",
        cluster_name=conf["cluster_name"],
        location=REGION,
        network_name=conf["network_name"],
        subnetwork_name=conf["subnet_name"],
        pods_range_name="pods",
        services_range_name="services",
        release_channel="RAPID",
        **common,
    ).execute({})
    hook = GKEClusterHook(location=REGION)
    poll_until(
        lambda: hook.get_cluster(conf["cluster_name"], project),
        lambda cluster: cluster.status == ClusterStatus.ERROR,
        description="the cluster in ERROR",
        timeout=20,
        poll_interval=0.1,
    )


def test_an_error_cluster_is_torn_down_and_rebuilt_fresh(dag, sandbox, clean_faults):
    conf = environment()
    project = sandbox.info["project_id"]
    key = (project, REGION, conf["cluster_name"])
    sandbox.faults_add(
        behaviour="cluster_error", project=project, location=REGION, cluster=conf["cluster_name"], count=1
    )
    build_with_an_error_cluster(conf, project)
    broken_cluster = dict(sandbox.sandbox.gcp.clusters[key])
    before = len(sandbox.requests())

    rebuilt = dag.test(run_conf={**conf, "mode": "rebuild"})

    states = states_of(rebuilt)
    assert rebuilt.state == "success", states
    teardown = {task: state for task, state in states.items() if task.startswith("teardown.")}
    assert set(teardown.values()) == {"success"}, teardown
    requests = sandbox.requests()[before:]
    deletes = [
        e["path"] for e in requests if e["method"] == "DELETE" and e["api"] in {"container", "compute"}
    ]
    assert any(path.endswith(f"/clusters/{conf['cluster_name']}") for path in deletes)
    assert any(path.endswith(f"/subnetworks/{conf['subnet_name']}") for path in deletes)
    assert any(path.endswith(f"/subnetworks/{conf['proxy_subnet_name']}") for path in deletes)
    assert any(path.endswith(f"/networks/{conf['network_name']}") for path in deletes)
    fresh = sandbox.sandbox.gcp.clusters[key]
    assert fresh["status"] == "RUNNING"
    assert fresh["id"] != broken_cluster["id"], "the broken cluster is still there"
    assert states["verify.check_chat_completion"] == "success"
    assert states["body_routing.check_wrong_model_rejected"] == "success"
    # The harness trap (tests/conftest.py params_kept): the next run in this process starts from defaults.
    after = process_params(dag, dag.get_task("plan_run"), {}, suppress_exception=False)
    defaults = {name: param.value for name, param in build_params().items()}
    for name in ("mode", "cluster_name", "network_name", "subnet_name", "gateway_port"):
        assert after[name] == defaults[name], name
