"""The model must fit the GPU (issue 11 §1) and Autopilot's GPU rules (§2), in the twin and in plan_run.

A vLLM pod sizes its KV cache from the GPU it was scheduled on; when one max_model_len request does
not fit it crash-loops with vLLM's own message, and no model server answers for it. GKE Warden
refuses GPU counts and requests Autopilot does not offer. plan_run refuses the same mistakes
before anything exists.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from gke_inference.operators.plan import PlanRunOperator
from gke_inference.params import build_params
from sandbox.kube.gpus import NODE_ACCELERATOR_ANNOTATION, NODE_ACCELERATOR_COUNT_ANNOTATION
from tests.sandbox.conftest import ClusterHandle

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
_names = itertools.count()
# vLLM 0.8.5's V1 engine, Llama 3.1 8B in bf16 on one L4 (24 GB) at --gpu-memory-utilization 0.9:
# 21.6e9 bytes x 0.9 - 14.96 GiB of weights - 1.5 GiB profiling reserve = 3.66 GiB of KV cache,
# 128 KiB per token, 1873 blocks of 16 tokens.
L4_CAPACITY = 29968
KV_CACHE_ERROR = (
    "ValueError: To serve at least one request with the models's max seq len (131072), (16.00 GiB KV "
    "cache is needed, which is larger than the available KV cache memory (3.66 GiB). Based on the "
    "available memory, the estimated maximum model length is 29968. Try increasing "
    "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
)


@pytest.fixture(scope="module")
def gpu_kube(sandbox):  # noqa: ANN001
    """A cluster started as the Container API starts one: with its data plane."""
    import tempfile
    from pathlib import Path

    number = next(_names)
    project = sandbox.info["project_id"]
    name = f"gpu-fit-{number}"

    async def start():
        return await sandbox.sandbox.start_kube_cluster(
            project=project, location="us-central1", name=name, network=f"gpu-fit-vpc-{number}"
        )

    cluster = sandbox.call(start)
    token = sandbox.run(sandbox.sandbox.tokens.mint)
    with tempfile.TemporaryDirectory(prefix="gpu-fit-") as workdir:
        try:
            yield ClusterHandle(sandbox, cluster, token, Path(workdir))
        finally:
            key = f"projects/{project}/locations/us-central1/clusters/{name}"
            sandbox.call(lambda: sandbox.sandbox.stop_kube_cluster(key))


@pytest.fixture(scope="module")
def core(gpu_kube):
    with gpu_kube.api_client() as api_client:
        yield k8s.CoreV1Api(api_client)


@pytest.fixture
def namespace(core) -> str:
    name = f"gpu-{next(_names)}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    core.create_namespaced_secret(
        name, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="hf-token"), string_data={"token": "hf_valid"})
    )
    return name


def vllm_pod(name: str, *args: str, gpus: int = 1, selector: dict | None = None, **requests: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": selector or {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "containers": [
                {
                    "name": "vllm",
                    "image": "vllm/vllm-openai:v0.8.5",
                    "args": ["--model", LLAMA, "--port", "8000", *args],
                    "env": [
                        {
                            "name": "HUGGING_FACE_HUB_TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
                        }
                    ],
                    "ports": [{"containerPort": 8000, "name": "http"}],
                    "resources": {
                        "requests": {"cpu": "4", "memory": "16Gi", **requests, "nvidia.com/gpu": str(gpus)},
                        "limits": {"nvidia.com/gpu": str(gpus)},
                    },
                }
            ],
        },
    }


def stored_pod(kube: ClusterHandle, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.cluster.store.get("v1", "Pod", namespace, name)


def wait_for_pod(kube: ClusterHandle, namespace: str, name: str, predicate, what: str) -> dict:
    return kube.wait_for(
        lambda: (pod := stored_pod(kube, namespace, name)) is not None and predicate(pod) and pod, what=what
    )


def container_status(pod: dict) -> dict:
    return ((pod.get("status") or {}).get("containerStatuses") or [{"state": {}}])[0]


def is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# -- the engine's KV cache against the GPU ---------------------------------------------------------


def test_the_full_context_on_one_l4_crash_loops_with_vllms_message(gpu_kube, core, namespace):
    core.create_namespaced_pod(namespace, vllm_pod("full", "--max-model-len", "131072"))

    pod = wait_for_pod(
        gpu_kube,
        namespace,
        "full",
        lambda p: (
            container_status(p).get("restartCount", 0) >= 1
            and (container_status(p)["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff"
        ),
        "a crash loop",
    )

    annotations = pod["metadata"]["annotations"]
    assert (annotations[NODE_ACCELERATOR_ANNOTATION], annotations[NODE_ACCELERATOR_COUNT_ANNOTATION]) == (
        "nvidia-l4",
        "1",
    )
    assert container_status(pod)["lastState"]["terminated"]["message"] == KV_CACHE_ERROR
    assert not is_ready(pod)
    log = core.read_namespaced_pod_log("full", namespace)
    assert KV_CACHE_ERROR in log
    assert (namespace, "full") not in gpu_kube.cluster.dataplane.model_servers


def test_a_length_that_fits_serves_with_the_gpus_kv_capacity(gpu_kube, core, namespace):
    core.create_namespaced_pod(namespace, vllm_pod("fits", "--max-model-len", "8192"))
    core.create_namespaced_pod(
        namespace, vllm_pod("two", "--max-model-len", "8192", "--tensor-parallel-size", "2", gpus=2)
    )

    for name in ("fits", "two"):
        wait_for_pod(gpu_kube, namespace, name, is_ready, f"{name} Ready")
    servers = gpu_kube.wait_for(
        lambda: (
            all((namespace, n) in gpu_kube.cluster.dataplane.model_servers for n in ("fits", "two"))
            and gpu_kube.cluster.dataplane.model_servers
        ),
        what="model servers",
    )

    # What /metrics divides by for vllm:gpu_cache_usage_perc, and so what the Endpoint Picker scores.
    one_l4 = servers[(namespace, "fits")].engine.spec
    assert (one_l4.kv_cache_tokens, one_l4.max_model_len) == (L4_CAPACITY, 8192)
    # Two L4s: half the weights and half the KV heads per GPU, so far more than twice the tokens.
    assert servers[(namespace, "two")].engine.spec.kv_cache_tokens == 182480
    assert "GPU KV cache size: 29,968 tokens" in core.read_namespaced_pod_log("fits", namespace)


def test_num_gpu_blocks_override_still_wins(gpu_kube, core, namespace):
    core.create_namespaced_pod(
        namespace, vllm_pod("pinned", "--max-model-len", "4096", "--num-gpu-blocks-override", "300")
    )
    wait_for_pod(gpu_kube, namespace, "pinned", is_ready, "pinned Ready")
    servers = gpu_kube.wait_for(
        lambda: (
            (namespace, "pinned") in gpu_kube.cluster.dataplane.model_servers
            and gpu_kube.cluster.dataplane.model_servers
        ),
        what="model server",
    )
    assert servers[(namespace, "pinned")].engine.spec.kv_cache_tokens == 300 * 16


def test_the_gpu_comes_from_the_compute_class_the_pod_selects(gpu_kube, core, namespace):
    class_name = f"a100-{namespace}"
    gpu_kube.run(
        gpu_kube.cluster.store.create,
        {
            "apiVersion": "cloud.google.com/v1",
            "kind": "ComputeClass",
            "metadata": {"name": class_name},
            "spec": {"priorities": [{"gpu": {"type": "nvidia-tesla-a100", "count": 1}, "spot": True}]},
        },
    )
    selector = {"cloud.google.com/compute-class": class_name}
    core.create_namespaced_pod(namespace, vllm_pod("classy", "--max-model-len", "131072", selector=selector))

    pod = wait_for_pod(gpu_kube, namespace, "classy", is_ready, "an A100 pod Ready with the full context")
    assert pod["metadata"]["annotations"][NODE_ACCELERATOR_ANNOTATION] == "nvidia-tesla-a100"


def test_a_gpu_no_zone_of_the_region_offers_stays_pending_with_the_autoscalers_event(
    gpu_kube, core, namespace, monkeypatch
):
    from sandbox.kube.controllers import pods

    offered = {"nvidia-l4": ["us-central1-a", "us-central1-b"]}
    monkeypatch.setattr(
        pods, "_zones_offering", lambda region, gpu: offered.get(gpu, []) if region == "us-central1" else []
    )
    selector = {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}
    core.create_namespaced_pod(
        namespace, vllm_pod("h200", "--max-model-len", "8192", gpus=8, selector=selector)
    )

    pod = wait_for_pod(
        gpu_kube,
        namespace,
        "h200",
        lambda p: any(
            c.get("reason") == "Unschedulable" for c in (p.get("status") or {}).get("conditions") or []
        ),
        "an Unschedulable pod",
    )
    assert pod["status"]["phase"] == "Pending"
    assert (
        "no zone of region us-central1 offers nvidia-h200-141gb" in pod["status"]["conditions"][0]["message"]
    )
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=h200").items
    scale_up = [e for e in events if e.reason == "NotTriggerScaleUp"]
    assert scale_up and scale_up[0].source.component == "cluster-autoscaler"
    assert scale_up[0].message == "pod didn't trigger scale-up (it wouldn't fit if a new node is added)"
    assert "nodeName" not in pod["spec"]
    # A GPU the region offers is scheduled as before.
    core.create_namespaced_pod(namespace, vllm_pod("l4", "--max-model-len", "8192"))
    wait_for_pod(gpu_kube, namespace, "l4", is_ready, "the L4 pod Ready")


# -- GKE Warden: Autopilot's GPU rules at admission ------------------------------------------------


def test_autopilot_refuses_a_gpu_count_the_type_does_not_come_in(gpu_kube, core, namespace):
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, vllm_pod("three", gpus=3))

    assert refused.value.status == 403
    body = refused.value.body
    assert 'admission webhook \\"warden-validating.common-webhooks.networking.gke.io\\" denied' in body
    assert "GKE Warden rejected the request because it violates one or more constraints" in body
    assert "[denied by autogke-gpu-limitation]" in body and "Supported counts: [1 2 4 8]" in body
    assert stored_pod(gpu_kube, namespace, "three") is None


def test_autopilot_refuses_requests_above_the_caps_of_the_gpu_count(gpu_kube, core, namespace):
    selector = {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, vllm_pod("big", selector=selector, cpu="12", memory="80Gi"))

    body = refused.value.body
    assert "[denied by autogke-pod-limit-constraints]" in body
    assert (
        "Total cpu requested by containers for workload 'big' is higher than the Autopilot maximum of '11'"
        in body
    )
    assert (
        "Total memory requested by containers for workload 'big' is higher than the Autopilot maximum of '74Gi'"
        in body
    )
    assert stored_pod(gpu_kube, namespace, "big") is None
    # At the caps it is admitted.
    core.create_namespaced_pod(namespace, vllm_pod("edge", selector=selector, cpu="11", memory="74Gi"))


def test_autopilot_refuses_a_deployment_whose_template_breaks_the_rules(gpu_kube, core, namespace):
    pod = vllm_pod("unused", gpus=3)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "vllm", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "vllm"}},
            "template": {"metadata": {"labels": {"app": "vllm"}}, "spec": pod["spec"]},
        },
    }
    with gpu_kube.api_client() as api_client, pytest.raises(ApiException) as refused:
        k8s.AppsV1Api(api_client).create_namespaced_deployment(namespace, deployment)
    assert "autogke-gpu-limitation" in refused.value.body
    assert gpu_kube.cluster.store.list("apps/v1", "Deployment", namespace) == []
    assert gpu_kube.cluster.store.list("v1", "Pod", namespace) == []


# -- plan_run refuses it first ---------------------------------------------------------------------

DEFAULTS = {name: param.value for name, param in build_params().items()}
ANY_API = {"compute", "container", "serviceusage", "kube", "gateway", "model", "oauth"}


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"max_model_len": 131072}, "max_model_len 131072 needs 16.0 GiB of KV cache; nvidia-l4 x1 at 0.9"),
        ({"gpu_count": 3}, "nvidia-l4 only in counts of 1, 2, 4, 8"),
    ],
)
def test_plan_run_refuses_what_the_gpu_cannot_hold_and_nothing_is_created(sandbox, overrides, reason):
    requests_before = len(sandbox.requests())

    with pytest.raises(AirflowFailException, match=reason) as refused:
        PlanRunOperator(task_id="plan_run").execute({"params": {**DEFAULTS, **overrides}})

    assert "nothing was created" in str(refused.value)
    assert [e for e in sandbox.requests()[requests_before:] if e["api"] in ANY_API] == []
