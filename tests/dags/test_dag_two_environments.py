"""Two environments defined in YAML, built in one project by their own DAGs; tearing one down leaves
the other whole (issue 15, section 6). Three whole-DAG runs: the slow lane."""

from __future__ import annotations

import pytest

from gke_inference.hooks.gke import GKEClusterHook
from gke_inference.manifests import render
from gke_inference.ownership import Owner
from gke_inference.params import build_params
from sandbox.testing import unique_name
from tests.conftest import REPO
from tests.plugins.conftest import ClusterRef

pytestmark = [pytest.mark.dag, pytest.mark.slow]
REGION = "us-central1"
WORKLOADS = ("model-inference-class.yaml", "vllm-llama3-1-8b-instruct.yaml", "inferencepool", "gateway.yaml")


def definition(name: str) -> dict:
    params = {
        "network_name": unique_name(f"{name}-vpc"),
        "subnet_name": unique_name(f"{name}-subnet"),
        "proxy_subnet_name": unique_name(f"{name}-proxy"),
        "cluster_name": unique_name(name),
        "gateway_port": 8080,
    }
    return {"name": name, "params": params}


@pytest.fixture
def two_environments(sandbox, tmp_path, monkeypatch):
    import yaml
    from airflow.dag_processing.dagbag import DagBag

    envs = {name: definition(name) for name in (unique_name("a"), unique_name("b"))}
    (tmp_path / "environments.yaml").write_text(yaml.safe_dump({"environments": list(envs.values())}))
    monkeypatch.setenv("GKE_INFERENCE_ENVIRONMENTS_DIR", str(tmp_path))
    monkeypatch.setenv("GKE_INFERENCE_RETRY_DELAY_SECONDS", "1")
    for conn_id, uri in sandbox.info["airflow_connections"].items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return {name: (bag.dags[f"gke_inference_gateway__{name}"], env["params"]) for name, env in envs.items()}


def run(dag, mode: str) -> None:
    dag_run = dag.test(run_conf={"mode": mode})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states


def live_objects(project: str, name: str, params: dict) -> dict[str, dict]:
    """Each workload object of the environment as its cluster serves it (None: gone)."""
    hook = ClusterRef(project, REGION, params["cluster_name"], params["network_name"]).hook()
    values = {key: param.value for key, param in build_params().items()} | params
    found = {}
    for manifest in WORKLOADS:
        for obj in render(manifest, values, owner=Owner(name)):
            meta = obj["metadata"]
            found[f"{obj['kind']}/{meta['name']}"] = hook.get(
                obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")
            )
    return found


def load_balancing(sandbox, project: str, network: str) -> set[str]:
    """What GKE built in the project on that VPC for a Gateway (resources naming no VPC left out)."""
    return {
        f"{collection}/{resource['name']}"
        for collection, resource in sandbox.sandbox.gcp.lb_resources(project)
        if resource.get("network", "").endswith(f"/networks/{network}")
    }


def test_tearing_one_environment_down_leaves_the_other_whole(sandbox, two_environments):
    project = sandbox.info["project_id"]
    (a, (dag_a, params_a)), (b, (dag_b, params_b)) = two_environments.items()
    run(dag_a, "ensure")
    run(dag_b, "ensure")
    objects_b = live_objects(project, b, params_b)
    assert all(obj is not None and Owner(b).owns_k8s_object(obj) for obj in objects_b.values()), objects_b
    load_balancer_b = sandbox.run(load_balancing, sandbox, project, params_b["network_name"])
    assert load_balancer_b, "b's Gateway got no load balancer"
    mark = len(sandbox.requests())

    run(dag_a, "teardown")

    gke = GKEClusterHook(location=REGION)
    assert gke.find_cluster(params_a["cluster_name"], project) is None
    assert (project, params_a["network_name"]) not in sandbox.sandbox.gcp.networks
    # b: not one DELETE named its GCP objects, and every workload object is still served, unchanged.
    b_names = [params_b[key] for key in ("cluster_name", "network_name", "subnet_name", "proxy_subnet_name")]
    deletes = [e["path"] for e in sandbox.requests()[mark:] if e["method"] == "DELETE"]
    assert deletes, "the teardown of the first environment deleted nothing"
    assert [path for path in deletes if any(name in path for name in b_names)] == []
    assert gke.find_cluster(params_b["cluster_name"], project).status.name == "RUNNING"
    assert (project, params_b["network_name"]) in sandbox.sandbox.gcp.networks
    # Both Gateways are default/inference-gateway: only the VPC tells GKE's resources apart.
    assert sandbox.run(load_balancing, sandbox, project, params_b["network_name"]) == load_balancer_b
    after = live_objects(project, b, params_b)
    assert {ref: obj["metadata"]["uid"] for ref, obj in after.items() if obj} == {
        ref: obj["metadata"]["uid"] for ref, obj in objects_b.items()
    }
