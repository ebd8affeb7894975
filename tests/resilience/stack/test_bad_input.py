"""Bad input is refused before anything is created.

Single-field problems are refused by the REST API's trigger call (HTTP 400, no run exists);
cross-field problems by the DAG's first task, plan_run (run directly here; test_concurrency.py
triggers one such run on the real stack). Either way the sandbox sees no request.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.operators.plan import PlanRunOperator
from gke_inference.params import build_params

pytestmark = pytest.mark.stack

# Each is a conf the trigger form or the REST API must refuse on its own (JSON schema of one param).
REFUSED_BY_SCHEMA = {
    "cidr prefix over 32": {"subnet_range": "10.0.0.0/33"},
    "cidr with three octets": {"subnet_range": "10.0.0/20"},
    "cidr octet over 255": {"pods_range": "10.300.0.0/14"},
    "cidr that is a word": {"services_range": "services"},
    "cidr as a number": {"proxy_subnet_range": 10},
    "upper-case network name": {"network_name": "Inference-VPC"},
    "network name with underscore": {"subnet_name": "inference_subnet"},
    "name starting with a dash": {"pods_range_name": "-pods"},
    "name ending with a dash": {"services_range_name": "services-"},
    "network name over 63 characters": {"network_name": "v" * 64},
    "cluster name over 40 characters": {"cluster_name": "c" * 41},
    "empty cluster name": {"cluster_name": ""},
    "unknown region": {"region": "us-central9"},
    "zone instead of a region": {"region": "us-central1-a"},
    "zero replicas": {"replicas": 0},
    "a hundred replicas": {"replicas": 100},
    "replicas as text": {"replicas": "two"},
    "fractional replicas": {"replicas": 1.5},
    "zero gpus": {"gpu_count": 0},
    "unknown gpu type": {"gpu_type": "nvidia-t4"},
    "empty model name": {"model_name": ""},
    "model name without an owner": {"model_name": "Llama-3.1-8B-Instruct"},
    "unknown mode": {"mode": "destroy"},
    "unspecified release channel": {"release_channel": "UNSPECIFIED"},
    "gateway port zero": {"gateway_port": 0},
    "gateway port over 65535": {"gateway_port": 70000},
    "global gateway class": {"gateway_class": "gke-l7-global-external-managed"},
    "boolean as text": {"use_existing_network": "yes"},
    "project id with upper case": {"project_id": "My_Project"},
    "extension version without v": {"inference_extension_version": "1.0.1"},
    "upper-case image": {"vllm_image": "VLLM/OpenAI:latest"},
    "empty prompt": {"prompt": ""},
    "zero max_tokens": {"max_tokens": 0},
    "cluster timeout of 5 s": {"cluster_timeout": 5},
    "namespace with underscore": {"namespace": "kube_system"},
}

# Each passes every single-field rule but cannot describe one environment: plan_run refuses it.
REFUSED_BY_PLAN = {
    "node subnet overlaps the pods range": ({"subnet_range": "10.4.0.0/20"}, "overlaps"),
    "services range inside the proxy-only range": ({"services_range": "10.129.0.0/24"}, "overlaps"),
    "link-local node range": ({"subnet_range": "169.254.0.0/20"}, "link-local"),
    "host bits set": ({"pods_range": "10.4.0.1/14"}, "not a valid network range"),
    "node subnet smaller than /29": ({"subnet_range": "10.0.0.0/30"}, "/29 or larger"),
    "pods range smaller than /21": ({"pods_range": "10.4.0.0/24"}, "/21 or larger"),
    "proxy-only range smaller than /26": ({"proxy_subnet_range": "10.129.0.0/28"}, "/26 or larger"),
    "one name for both secondary ranges": ({"services_range_name": "pods-range"}, "must differ"),
    "one name for both subnets": ({"proxy_subnet_name": "inference-subnet"}, "must differ"),
    "wrong model is the model": ({"wrong_model_name": "meta-llama/Llama-3.1-8B-Instruct"}, "must differ"),
    "pool named like the model app": ({"pool_name": "vllm-llama3-1-8b-instruct"}, "must differ"),
    "no GPU capacity source": ({"flex_start": False, "spot": False}, "no GPU capacity source"),
    "a namespace the DAG does not create": ({"namespace": "inference"}, "does not exist on a new cluster"),
    "pool named like the router's health check": ({"pool_name": "bbr-healthcheck"}, "two objects named"),
    "replicas written as a decimal": ({"replicas": 2.0}, "write it as a whole number"),
    "a built-in ComputeClass": ({"compute_class_name": "autopilot"}, "builds in"),
}

# Passes Airflow's trigger API (HTTP 200, a run exists) and is refused by plan_run, the first task:
# the unknown key, and an integer written as a decimal.
ACCEPTED_BY_AIRFLOW = {"mode": "teardown", "Cluster_name": "staging-cl", "gateway_port": 8080.0}
REASONS = (
    "unknown param 'Cluster_name'; did you mean 'cluster_name'?",
    "gateway_port: 8080.0 is written as a decimal",
)

ANY_API = {"compute", "container", "serviceusage", "kube", "gateway", "model", "oauth"}


def api_requests(sandbox, since: int) -> list[str]:
    return [f"{e['method']} {e['path']}" for e in sandbox.requests()[since:] if e["api"] in ANY_API]


def default_params() -> dict:
    return {name: param.value for name, param in build_params().items()}


def test_at_least_25_single_field_problems_are_listed():
    assert len(REFUSED_BY_SCHEMA) >= 25


@pytest.mark.parametrize("conf", REFUSED_BY_SCHEMA.values(), ids=REFUSED_BY_SCHEMA.keys())
def test_the_trigger_api_refuses_a_bad_param_and_no_run_exists(airflow_api, sandbox, conf):
    runs_before = airflow_api.get_json("/api/v2/dags/gke_inference_gateway/dagRuns")["total_entries"]
    requests_before = len(sandbox.requests())

    answer = airflow_api.trigger(conf)

    assert answer.status_code == 400, answer.text
    (name,) = conf
    assert name in answer.text, f"the refusal should name the param: {answer.text}"
    assert airflow_api.get_json("/api/v2/dags/gke_inference_gateway/dagRuns")["total_entries"] == runs_before
    assert api_requests(sandbox, requests_before) == []


@pytest.mark.parametrize(("conf", "reason"), REFUSED_BY_PLAN.values(), ids=REFUSED_BY_PLAN.keys())
def test_plan_run_refuses_params_that_contradict_each_other(sandbox, conf, reason):
    requests_before = len(sandbox.requests())
    # Validation comes first: with bad params plan_run never reaches the run or the connection.
    context = {"params": {**default_params(), **conf}}

    with pytest.raises(AirflowFailException, match=reason) as refused:
        PlanRunOperator(task_id="plan_run").execute(context)

    assert "nothing was created" in str(refused.value)
    assert api_requests(sandbox, requests_before) == []


WRITING = {"POST", "PUT", "PATCH", "DELETE"}


def test_airflow_lets_unknown_keys_and_decimal_integers_through_and_plan_run_refuses_them(
    airflow_api, sandbox
):
    """Airflow 3.3 merges a conf key that is not a param into the params without a schema, and JSON
    schema's "integer" takes 8080.0 (SerializedParamsDict.deep_merge then validate): the trigger
    answers 200. plan_run fails the run at its first try; the twin sees no writing request."""
    requests_before = len(sandbox.requests())
    run_id = airflow_api.trigger_ok(ACCEPTED_BY_AIRFLOW)

    assert airflow_api.wait_finished(run_id) == "failed"
    plan = next(ti for ti in airflow_api.task_instances(run_id) if ti["task_id"] == "plan_run")
    assert (plan["state"], plan["try_number"]) == ("failed", 1), plan
    log = airflow_api.request(
        "GET", f"/api/v2/dags/gke_inference_gateway/dagRuns/{run_id}/taskInstances/plan_run/logs/1"
    ).text
    for reason in REASONS:
        assert reason in log, log[-2000:]
    writes = [e for e in sandbox.requests()[requests_before:] if e["method"] in WRITING]
    assert writes == []
