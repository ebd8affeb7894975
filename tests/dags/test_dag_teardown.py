"""Build, then teardown, with GKE's load-balancer cleanup delayed: the DAG waits for the Gateway's
release instead of failing on a subnet in use, and leaves no load balancer, subnet or VPC behind."""

from __future__ import annotations

import pytest

from sandbox.testing import unique_name
from tests.dags.teardown_order import assert_teardown_order
from tests.dags.test_endpoint_asset import DEFAULTS, announced

pytestmark = pytest.mark.dag
REGION = "us-central1"


def environment() -> dict:
    """Params that give the run its own VPC, subnets and cluster in the shared sandbox."""
    return {
        "network_name": unique_name("td-vpc"),
        "subnet_name": unique_name("td-subnet"),
        "proxy_subnet_name": unique_name("td-proxy"),
        "cluster_name": unique_name("td"),
        "gateway_port": 8080,
    }


def run(dag, conf: dict) -> dict:
    dag_run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    return states


def test_teardown_waits_for_the_load_balancer_and_leaves_nothing(dag, sandbox, clean_faults):
    conf = environment()
    project = sandbox.info["project_id"]

    def load_balancing() -> set[str]:
        return {f"{c}/{r['name']}" for c, r in sandbox.sandbox.gcp.lb_resources(project)}

    existing = sandbox.run(load_balancing)
    run(dag, {**conf, "mode": "ensure"})
    built = sandbox.run(load_balancing) - existing
    assert any(name.startswith("forwardingRules/gkegw1-") for name in built)
    assert any(name.startswith("networkEndpointGroups/k8s1-") for name in built)
    sandbox.run(
        sandbox.sandbox.faults.add_behaviour, "lb_cleanup_late", count=2, cluster=conf["cluster_name"]
    )
    before = len(sandbox.requests())

    states = run(dag, {**conf, "mode": "teardown"})

    assert states["teardown.wait_gateway_released"] == "success"
    assert states["teardown.sweep_load_balancer"] == "success"
    delayed = [r for r in sandbox.sandbox.faults.rules() if r.get("name") == "lb_cleanup_late"]
    assert delayed == [], "the cleanup was postponed twice"
    assert built & sandbox.run(load_balancing) == set()
    subnets = {key[2] for key in sandbox.sandbox.gcp.subnetworks if key[0] == project}
    assert not {conf["subnet_name"], conf["proxy_subnet_name"]} & subnets
    assert (project, conf["network_name"]) not in sandbox.sandbox.gcp.networks
    endpoint = {**DEFAULTS, **conf, "project_id": project, "region": REGION}
    assert [e["state"] for e in announced(endpoint)] == ["up", "gone"], "the teardown marks the endpoint gone"
    requests = sandbox.requests()[before:]
    refused = [e["path"] for e in requests if e["method"] == "DELETE" and e["status"] == 400]
    assert refused == [], "a delete was refused: the DAG did not wait for GKE"
    swept = [e["path"] for e in requests if e["method"] == "DELETE" and "/gkegw1-" in e["path"]]
    assert swept == [], "GKE removed the load balancer; the sweep had nothing to do"
    assert_teardown_order(
        requests,
        cluster_name=conf["cluster_name"],
        subnet_names={conf["subnet_name"], conf["proxy_subnet_name"]},
        network_name=conf["network_name"],
        workloads=True,
    )
