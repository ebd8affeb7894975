"""The GCP operators, executed directly against the sandbox: idempotent ensure, teardown, failures."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from gke_inference.hooks._errors import OperationTimeoutError
from gke_inference.hooks._operations import poll_until
from gke_inference.hooks.compute_network import ComputeNetworkHook, ResourceInUseError, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, ClusterStatus, GKEClusterHook
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.ownership import NETWORK_DESCRIPTION
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.triggers.cluster import ClusterRunningTrigger
from tests.plugins.conftest import REGION, unique

CONTEXT: dict = {}


def ensure_network_ops(project: str, names: dict[str, str], use_existing: bool | str = False) -> list:
    common = {"project_id": project, "gcp_conn_id": "google_cloud_default"}
    return [
        EnsureNetworkOperator(
            task_id="network", network_name=names["network"], use_existing=use_existing, **common
        ),
        EnsureSubnetworkOperator(
            task_id="node_subnet",
            network_name=names["network"],
            subnetwork_name=names["subnet"],
            region=REGION,
            ip_cidr_range="10.0.0.0/20",
            secondary_ranges={"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"},
            use_existing=use_existing,
            **common,
        ),
        EnsureSubnetworkOperator(
            task_id="proxy_subnet",
            network_name=names["network"],
            subnetwork_name=names["proxy"],
            region=REGION,
            ip_cidr_range="10.129.0.0/23",
            purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE",
            use_existing=use_existing,
            **common,
        ),
    ]


def cluster_op(project: str, names: dict[str, str], **overrides) -> EnsureAutopilotClusterOperator:
    args = {
        "task_id": "cluster",
        "project_id": project,
        "cluster_name": names["cluster"],
        "location": REGION,
        "network_name": names["network"],
        "subnetwork_name": names["subnet"],
        "pods_range_name": "pods-range",
        "services_range_name": "services-range",
        "release_channel": "RAPID",
    }
    return EnsureAutopilotClusterOperator(**(args | overrides))


def sensor(project: str, cluster: str, **overrides) -> ClusterRunningSensor:
    args = {"task_id": "wait", "project_id": project, "cluster_name": cluster, "location": REGION}
    return ClusterRunningSensor(**(args | {"timeout": 60, "poll_interval": 0.1} | overrides))


@pytest.fixture
def names() -> dict[str, str]:
    return {k: unique(k) for k in ("network", "subnet", "proxy", "cluster")}


@pytest.fixture
def network_ready(project, names) -> dict[str, str]:
    for op in ensure_network_ops(project, names):
        op.execute(CONTEXT)
    return names


def wait_status(project: str, cluster: str, status: ClusterStatus):
    hook = GKEClusterHook(location=REGION)
    return poll_until(
        lambda: hook.get_cluster(cluster, project),
        lambda c: c.status == status,
        description=cluster,
        timeout=20,
        poll_interval=0.1,
    )


def test_enable_apis_in_a_new_project_then_nothing_on_rerun(new_project):
    op = EnableApisOperator(task_id="apis", project_id=new_project)

    first = op.execute(CONTEXT)
    again = op.execute(CONTEXT)

    assert first["project_id"] == new_project
    assert "compute.googleapis.com" in first["enabled"] and "container.googleapis.com" in first["enabled"]
    assert again["enabled"] == [] and len(again["already_enabled"]) == 8
    # The one result shape: refs grouped by outcome.
    assert "Api/compute.googleapis.com" in first["created"] and "created" not in again
    assert len(again["unchanged"]) == 8


def test_network_steps_in_a_project_with_apis_disabled_fail_fast_naming_the_api(new_project, names):
    with pytest.raises(AirflowFailException) as failure:
        ensure_network_ops(new_project, names)[0].execute(CONTEXT)

    message = str(failure.value)
    assert message.startswith("Creating the VPC (tutorial 1.3) failed:")
    assert "compute.googleapis.com is disabled in the project (SERVICE_DISABLED)" in message


def test_project_network_is_created_once_and_reruns_create_nothing(sandbox, project, names):
    first = [op.execute(CONTEXT) for op in ensure_network_ops(project, names)]
    again = [op.execute(CONTEXT) for op in ensure_network_ops(project, names)]

    refs = [
        f"Network/{names['network']}",
        f"Subnetwork/{REGION}/{names['subnet']}",
        f"Subnetwork/{REGION}/{names['proxy']}",
    ]
    assert [r.get("created") for r in first] == [[ref] for ref in refs]
    assert [r.get("unchanged") for r in again] == [[ref] for ref in refs]
    assert not any("created" in r for r in again)
    assert [r["name"] for r in again] == [names["network"], names["subnet"], names["proxy"]]
    assert again[2]["purpose"] == "REGIONAL_MANAGED_PROXY"
    posts = [e for e in sandbox.requests("compute") if e["method"] == "POST" and project in e["path"]]
    assert len([e for e in posts if "/operations/" not in e["path"]]) == 3


def test_existing_network_mode_uses_what_exists_and_adds_only_the_proxy_subnet(project, names):
    network, node_subnet, _ = ensure_network_ops(project, names)
    hook = ComputeNetworkHook()
    hook.ensure_network(names["network"], project, description="the team's VPC")
    hook.ensure_subnetwork(
        SubnetworkSpec(
            names["subnet"],
            REGION,
            "10.20.0.0/20",
            {"pods-range": "10.24.0.0/14", "services-range": "10.28.0.0/20"},
        ),
        names["network"],
        project,
        description="the team's subnet",
    )

    results = [op.execute(CONTEXT) for op in ensure_network_ops(project, names, use_existing=True)]

    assert [("created" in r, r["owned"]) for r in results] == [(False, False), (False, False), (True, True)]


def test_existing_network_mode_refuses_to_create_a_missing_vpc(project, names):
    with pytest.raises(AirflowFailException, match=r"tutorial 1\.3.*never creates"):
        ensure_network_ops(project, names, use_existing=True)[0].execute(CONTEXT)

    assert ComputeNetworkHook().find_network(names["network"], project) is None


def test_bad_flag_value_fails_fast():
    # A DAG author's string is refused as the DAG is parsed: the plan passes a bool.
    with pytest.raises(TypeError, match="use_existing must be true or false .*got 'True'"):
        EnsureNetworkOperator(task_id="n", project_id="p", network_name="n", use_existing="True")
    # One that arrives at run time (an XComArg) fails the task without retries.
    op = EnsureNetworkOperator(task_id="n", project_id="p", network_name="n")
    op.use_existing = "maybe"
    with pytest.raises(AirflowFailException, match="use_existing must be true or false .*got 'maybe'"):
        op.execute(CONTEXT)


def test_cluster_is_created_then_found_and_the_sensor_returns_its_version(
    project, network_ready, slow_cluster_provisioning
):
    created = cluster_op(project, network_ready).execute(CONTEXT)
    running = wait_status(project, network_ready["cluster"], ClusterStatus.RUNNING)
    again = cluster_op(project, network_ready).execute(CONTEXT)
    summary = sensor(project, network_ready["cluster"]).execute(CONTEXT)

    ref = f"Cluster/{REGION}/{network_ready['cluster']}"
    assert created["created"] == [ref] and created["status"] == "PROVISIONING" and created["owned"]
    assert again["unchanged"] == [ref] and "created" not in again and again["status"] == "RUNNING"
    assert summary["current_master_version"] == running.current_master_version
    assert summary["endpoint"] == running.endpoint and summary["status"] == "RUNNING"


def test_sensor_defers_while_provisioning_with_the_timeout(project, network_ready, slow_cluster_provisioning):
    cluster_op(project, network_ready).execute(CONTEXT)

    with pytest.raises(TaskDeferred) as deferred:
        sensor(project, network_ready["cluster"], timeout=45).execute(CONTEXT)

    trigger = deferred.value.trigger
    assert isinstance(trigger, ClusterRunningTrigger)
    assert (trigger.target.cluster_name, trigger.target.project_id, trigger.poll_interval) == (
        network_ready["cluster"],
        project,
        0.1,
    )
    assert deferred.value.timeout.total_seconds() == 45
    assert deferred.value.method_name == "execute_complete"


def test_sensor_fails_fast_on_a_cluster_in_error(sandbox, project, network_ready, clean_faults):
    sandbox.faults_add(behaviour="cluster_error", project=project)
    cluster_op(project, network_ready).execute(CONTEXT)
    wait_status(project, network_ready["cluster"], ClusterStatus.ERROR)

    with pytest.raises(AirflowFailException, match=r"tutorial 2\.1.*is ERROR: Cluster creation failed"):
        sensor(project, network_ready["cluster"]).execute(CONTEXT)


def test_sensor_completion_events():
    op = sensor("p", "c")
    cluster = {"name": "c", "current_master_version": "1.34.1-gke.1", "endpoint": "127.0.0.1:1"}

    assert op.execute_complete(CONTEXT, {"status": "success", "result": cluster}) == cluster
    with pytest.raises(AirflowFailException, match="cluster 'c' is ERROR"):
        op.execute_complete(CONTEXT, {"status": "failed", "message": "cluster 'c' is ERROR"})
    with pytest.raises(RuntimeError, match="will retry: HTTP 500"):
        op.execute_complete(CONTEXT, {"status": "error", "message": "HTTP 500"})
    # Still provisioning at the deadline is no verdict on the cluster: the task retries.
    with pytest.raises(RuntimeError, match="will retry: cluster 'c': gave up"):
        op.execute_complete(CONTEXT, {"status": "timeout", "message": "cluster 'c': gave up after 30s"})


def test_existing_cluster_on_another_network_fails_fast(project, network_ready):
    cluster_op(project, network_ready).execute(CONTEXT)
    elsewhere = network_ready | {"network": unique("network"), "subnet": unique("subnet")}
    for op in ensure_network_ops(project, elsewhere)[:2]:
        op.execute(CONTEXT)

    with pytest.raises(AirflowFailException, match=r"tutorial 2\.1.*already exists but it is on network"):
        cluster_op(project, elsewhere).execute(CONTEXT)


def test_unknown_release_channel_fails_fast(project, network_ready):
    with pytest.raises(
        AirflowFailException,
        match="Unknown release channel 'UNSPECIFIED'; use one of RAPID, REGULAR, STABLE, EXTENDED",
    ):
        cluster_op(project, network_ready, release_channel="UNSPECIFIED").execute(CONTEXT)


def test_teardown_deletes_what_the_dag_made_and_reruns_are_no_ops(project, network_ready):
    cluster_op(project, network_ready).execute(CONTEXT)
    wait_status(project, network_ready["cluster"], ClusterStatus.RUNNING)
    common = {"project_id": project}
    teardown = [
        DeleteClusterOperator(task_id="c", cluster_name=network_ready["cluster"], location=REGION, **common),
        DeleteSubnetworkOperator(
            task_id="p", subnetwork_name=network_ready["proxy"], region=REGION, **common
        ),
        DeleteSubnetworkOperator(
            task_id="s", subnetwork_name=network_ready["subnet"], region=REGION, **common
        ),
        DeleteNetworkOperator(task_id="n", network_name=network_ready["network"], **common),
    ]

    first = [op.execute(CONTEXT) for op in teardown]
    again = [op.execute(CONTEXT) for op in teardown]

    assert [r["reason"] for r in first] == ["deleted"] * 4 and all(r["deleted"] for r in first)
    assert [r["reason"] for r in again] == ["absent"] * 4
    assert [r["absent"] for r in again] == [r["deleted"] for r in first]  # the same one ref each
    assert first[0]["deleted"] == [f"Cluster/{REGION}/{network_ready['cluster']}"]
    assert GKEClusterHook(location=REGION).find_cluster(network_ready["cluster"], project) is None
    assert ComputeNetworkHook().find_network(network_ready["network"], project) is None


def test_teardown_leaves_resources_the_dag_does_not_own(project, names):
    hook = ComputeNetworkHook()
    hook.ensure_network(names["network"], project, description="someone else's VPC")
    hook.ensure_subnetwork(
        SubnetworkSpec(
            names["subnet"],
            REGION,
            "10.0.0.0/20",
            {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"},
        ),
        names["network"],
        project,
        description="someone else's subnet",
    )
    gke = GKEClusterHook(location=REGION)
    unlabelled = AutopilotClusterSpec(
        names["cluster"], names["network"], names["subnet"], "pods-range", "services-range", "RAPID", {}
    )
    gke.create_cluster(unlabelled.to_cluster(), project)

    results = [
        DeleteClusterOperator(
            task_id="c", project_id=project, cluster_name=names["cluster"], location=REGION
        ).execute(CONTEXT),
        DeleteSubnetworkOperator(
            task_id="s", project_id=project, subnetwork_name=names["subnet"], region=REGION
        ).execute(CONTEXT),
        DeleteNetworkOperator(task_id="n", project_id=project, network_name=names["network"]).execute(
            CONTEXT
        ),
    ]

    assert [r["reason"] for r in results] == ["not owned"] * 3
    assert gke.find_cluster(names["cluster"], project) is not None
    assert hook.find_network(names["network"], project) is not None
    assert NETWORK_DESCRIPTION not in hook.get_subnetwork(names["subnet"], REGION, project).description


def test_a_deletion_outlasting_its_timeout_is_left_to_airflow_retries(project, network_ready):
    cluster_op(project, network_ready).execute(CONTEXT)
    wait_status(project, network_ready["cluster"], ClusterStatus.RUNNING)
    op = DeleteClusterOperator(
        task_id="c",
        project_id=project,
        cluster_name=network_ready["cluster"],
        location=REGION,
        delete_timeout=0.001,
    )

    with pytest.raises(OperationTimeoutError):
        op.execute(CONTEXT)


def test_deleting_a_vpc_still_in_use_is_left_to_airflow_retries(project, network_ready):
    op = DeleteNetworkOperator(task_id="n", project_id=project, network_name=network_ready["network"])

    with pytest.raises(ResourceInUseError, match="Cannot delete network .* yet: .*already being used"):
        op.execute(CONTEXT)

    assert ComputeNetworkHook().find_network(network_ready["network"], project) is not None


def test_console_links_point_at_the_managed_resources():
    names = {"network": "vpc", "subnet": "nodes", "proxy": "proxy", "cluster": "lab"}
    network, node_subnet, _ = ensure_network_ops("my-project", names)

    def link(op) -> str:
        (only,) = op.operator_extra_links
        return only.get_link(op, ti_key=None)

    assert (
        link(network) == "https://console.cloud.google.com/networking/networks/details/vpc?project=my-project"
    )
    assert link(node_subnet).endswith("/networking/subnetworks/details/us-central1/nodes?project=my-project")
    assert link(cluster_op("my-project", names)).endswith(
        "/kubernetes/clusters/details/us-central1/lab/details?project=my-project"
    )
    assert link(sensor("my-project", "lab")) == link(cluster_op("my-project", names))
    assert link(EnableApisOperator(task_id="apis", project_id=None)) == ""
