"""The teardown TaskGroup, one factory for its two uses in the DAG: ``teardown`` (the mode's, before
a rebuild) and ``cleanup`` (the cost guard's, after a failed build or keep_for_hours).

Teardown must work when things are broken: once it has started, the cluster delete runs whether
deleting the workloads and waiting for the load balancer worked or not (the sweep removes what GKE
left). From the cluster on, each delete needs the one before it done: a subnet cannot go while the
cluster uses it, nor the VPC while it holds a subnet.

Every task takes its values from the group's ``start`` (a RelayPlanOperator, or the cost guard's
gate), never from plan_run: the "one success" trigger rules below then count only what happened in
the group, so a group whose start was skipped deletes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup

from gke_inference.endpoint_asset import ENDPOINT_ALIAS, announce_gone
from gke_inference.operators.plan import RelayPlanOperator
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
    SweepGatewayLoadBalancerOperator,
)
from gke_inference.operators.workloads import DeleteManifestsOperator
from gke_inference.sensors.teardown import GatewayReleasedSensor

WHATEVER_CAME_BEFORE = "all_done_min_one_success"


def teardown_group(
    group_id: str, plan: Any, start: Callable[..., BaseOperator] = RelayPlanOperator, **start_kwargs: Any
) -> TaskGroup:
    """Build the group; ``start(task_id="start", plan=plan, **start_kwargs)`` opens it."""
    with TaskGroup(group_id) as group:
        first = start(task_id="start", plan=plan, **start_kwargs)
        values = first.output
        gcp = {"project_id": values["project_id"], "gcp_conn_id": values["gcp_conn_id"]}
        regional = {**gcp, "region": values["region"]}
        cluster_target = {**gcp, "location": values["region"], "cluster_name": values["cluster_name"]}
        delete_workloads = DeleteManifestsOperator(
            task_id="delete_workloads", **cluster_target, namespace=values["namespace"], values=values
        )
        # GKE removes the Gateway's load balancer over minutes; the cluster must outlive that.
        wait_gateway_released = GatewayReleasedSensor(
            task_id="wait_gateway_released",
            trigger_rule=WHATEVER_CAME_BEFORE,
            **cluster_target,
            namespace=values["namespace"],
            gateway_name=values["gateway_name"],
            network_name=values["network_name"],
            wait_timeout=1800,
        )
        delete_cluster = DeleteClusterOperator(
            task_id="delete_cluster", **cluster_target, trigger_rule=WHATEVER_CAME_BEFORE
        )
        sweep_load_balancer = SweepGatewayLoadBalancerOperator(
            task_id="sweep_load_balancer",
            **regional,
            network_name=values["network_name"],
            subnetwork_names=[values["subnet_name"], values["proxy_subnet_name"]],
            namespace=values["namespace"],
            gateway_name=values["gateway_name"],
        )
        delete_proxy_subnet = DeleteSubnetworkOperator(
            task_id="delete_proxy_subnet", **regional, subnetwork_name=values["proxy_subnet_name"]
        )
        delete_node_subnet = DeleteSubnetworkOperator(
            task_id="delete_node_subnet", **regional, subnetwork_name=values["subnet_name"]
        )
        # The endpoint is gone: an Asset event (gke_inference.endpoint_asset) for the DAGs scheduled on it.
        delete_network = DeleteNetworkOperator(
            task_id="delete_network",
            **gcp,
            network_name=values["network_name"],
            outlets=[ENDPOINT_ALIAS],
            post_execute=announce_gone,
        )
        first >> [delete_workloads, wait_gateway_released, delete_cluster]
        delete_workloads >> wait_gateway_released >> delete_cluster >> sweep_load_balancer
        sweep_load_balancer >> [delete_proxy_subnet, delete_node_subnet] >> delete_network
    return group
