"""Simulated controllers seen through the official client: pods, deployments, gateways, routes, pools."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.sandbox.conftest import ClusterHandle, add_proxy_only_subnet, start_cluster

MANAGER = "controller-test"
GATEWAY_V1 = "gateway.networking.k8s.io/v1"
POOL_V1 = "inference.networking.k8s.io/v1"


GATED_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
OPEN_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"  # needs no Hugging Face token


def vllm_deployment(
    name: str,
    namespace: str,
    *,
    replicas: int = 1,
    env: list | None = None,
    node_selector=None,
    model: str = OPEN_MODEL,
):
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "vllm",
                "image": "vllm/vllm-openai:v0.8.5",
                "args": ["--model", model, "--port", "8000"],
                "env": env if env is not None else [],
                "ports": [{"containerPort": 8000, "name": "http"}],
            }
        ]
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


HF_ENV = [
    {"name": "HUGGING_FACE_HUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
]


def apply(dynamic: DynamicClient, manifest: dict, namespace: str | None = None):
    resource = dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    return resource.server_side_apply(body=manifest, namespace=namespace, field_manager=MANAGER)


def pods_of(kube, namespace: str, app: str) -> list[dict]:
    return kube.run(kube.cluster.store.list, "v1", "Pod", namespace, {"app": app})


def condition_of(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def wait_for_pods(kube, namespace: str, app: str, predicate, what: str, timeout: float = 10.0) -> list[dict]:
    def probe():
        pods = kube.cluster.store.list("v1", "Pod", namespace, {"app": app})
        return pods if pods and all(predicate(pod) for pod in pods) else None

    return kube.wait_for(probe, timeout=timeout, what=what)


def is_ready(pod: dict) -> bool:
    return (condition_of(pod, "Ready") or {}).get("status") == "True"


def waiting_reason(pod: dict) -> str | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (statuses[0]["state"].get("waiting") or {}).get("reason") if statuses else None


def pod_event_reasons(kube, namespace: str, name: str) -> set[str]:
    """Reasons of the Events about one object, read from the store (for probes on the sandbox loop)."""
    events = kube.cluster.store.list("v1", "Event", namespace)
    return {event["reason"] for event in events if event["involvedObject"]["name"] == name}


def events_of(api, namespace: str, name: str) -> dict[str, str]:
    """reason -> message of the Events about one object, as `kubectl describe` finds them."""
    events = k8s.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return {event.reason: event.message for event in events.items}


def create_hf_secret(api, namespace: str, token: str) -> None:
    k8s.CoreV1Api(api).create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="hf-token"), string_data={"token": token})
    )


# -- pods and deployments -------------------------------------------------------------------------


def test_deployment_pods_become_ready_after_the_model_loads(kube, api, dynamic, namespace):
    create_hf_secret(api, namespace, "hf_valid")
    apply(dynamic, vllm_deployment("vllm", namespace, replicas=2, env=HF_ENV, model=GATED_MODEL), namespace)

    pods = wait_for_pods(kube, namespace, "vllm", is_ready, "two Ready vLLM pods")
    addresses = {pod["status"]["podIP"] for pod in pods}
    assert len(addresses) == 2
    assert all(ipaddress.ip_address(a).is_loopback and a != "127.0.0.1" for a in addresses)
    assert all(pod["status"]["phase"] == "Running" for pod in pods)
    assert all(pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for pod in pods)

    deployment = kube.wait_for(
        lambda: (
            (d := kube.cluster.store.get("apps/v1", "Deployment", namespace, "vllm"))
            and d["status"].get("availableReplicas") == 2
            and d
        ),
        what="deployment availability",
    )
    status = deployment["status"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (2, 2, 2)
    assert condition_of(deployment, "Available")["status"] == "True"
    assert status["observedGeneration"] == deployment["metadata"]["generation"]


def test_pods_are_not_ready_while_the_model_loads(sandbox, dynamic, kube, namespace):
    loading = max(sandbox.sandbox.profile.model_load, 0.2)
    apply(dynamic, vllm_deployment("slow", namespace), namespace)
    running = wait_for_pods(
        kube, namespace, "slow", lambda p: p["status"].get("phase") == "Running", "a Running pod", timeout=5
    )
    ready_at_start = is_ready(running[0])
    wait_for_pods(kube, namespace, "slow", is_ready, "the pod to become Ready", timeout=5 + loading)
    assert not ready_at_start


def test_scaling_and_template_changes(kube, api, dynamic, namespace):
    apps = k8s.AppsV1Api(api)
    apply(dynamic, vllm_deployment("scaled", namespace, replicas=1), namespace)
    wait_for_pods(kube, namespace, "scaled", is_ready, "one Ready pod")

    scale = apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 3}})
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 3, "app=scaled")
    kube.wait_for(lambda: len(pods_of_store(kube, namespace, "scaled")) == 3, what="scale up to 3")
    assert apps.read_namespaced_deployment_scale("scaled", namespace).status.replicas == 3
    apps.patch_namespaced_deployment("scaled", namespace, {"spec": {"replicas": 1}})
    kube.wait_for(lambda: len(pods_of_store(kube, namespace, "scaled")) == 1, what="scale down to 1")

    first_replica_sets = {rs.metadata.name for rs in apps.list_namespaced_replica_set(namespace).items}
    old_pod = pods_of_store(kube, namespace, "scaled")[0]["metadata"]["name"]
    # The new template needs a Secret that does not exist yet, so its pod cannot start.
    manifest = vllm_deployment("scaled", namespace, replicas=1, env=HF_ENV)
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai:v0.9.0"
    apply(dynamic, manifest, namespace)
    during = kube.wait_for(
        lambda: (
            (pods := pods_of_store(kube, namespace, "scaled"))
            and any(waiting_reason(p) == "CreateContainerConfigError" for p in pods)
            and pods
        ),
        what="the new pod to be stuck",
    )
    assert old_pod in {
        p["metadata"]["name"] for p in during if is_ready(p)
    }  # rolling update: old pod serves on

    create_hf_secret(api, namespace, "hf_valid")
    pods = wait_for_pods(
        kube,
        namespace,
        "scaled",
        lambda p: p["spec"]["containers"][0]["image"].endswith("v0.9.0") and is_ready(p),
        "the rollout to finish",
    )
    assert len(pods) == 1
    replica_sets = {
        rs.metadata.name: rs.spec.replicas for rs in apps.list_namespaced_replica_set(namespace).items
    }
    new = set(replica_sets) - first_replica_sets
    assert len(new) == 1 and replica_sets[new.pop()] == 1
    assert all(replica_sets[name] == 0 for name in first_replica_sets)


def pods_of_store(kube, namespace: str, app: str) -> list[dict]:
    return kube.cluster.store.list("v1", "Pod", namespace, {"app": app})


def test_a_missing_secret_is_a_container_config_error_until_it_exists(kube, api, dynamic, namespace):
    apply(dynamic, vllm_deployment("nosecret", namespace, env=HF_ENV, model=GATED_MODEL), namespace)
    pods = wait_for_pods(
        kube,
        namespace,
        "nosecret",
        lambda p: waiting_reason(p) == "CreateContainerConfigError",
        "CreateContainerConfigError",
    )
    assert (
        'secret "hf-token" not found'
        in pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    assert pods[0]["status"]["phase"] == "Pending"
    with pytest.raises(ApiException) as no_logs:
        k8s.CoreV1Api(api).read_namespaced_pod_log(pods[0]["metadata"]["name"], namespace)
    assert "is waiting to start: CreateContainerConfigError" in no_logs.value.body

    create_hf_secret(api, namespace, "hf_valid")
    wait_for_pods(kube, namespace, "nosecret", is_ready, "the pod to start once the Secret exists")


def test_a_missing_secret_key_is_reported(kube, api, dynamic, namespace):
    k8s.CoreV1Api(api).create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="hf-token"), string_data={"other": "x"})
    )
    apply(dynamic, vllm_deployment("nokey", namespace, env=HF_ENV, model=GATED_MODEL), namespace)
    pods = wait_for_pods(
        kube, namespace, "nokey", lambda p: waiting_reason(p) == "CreateContainerConfigError", "config error"
    )
    message = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert message == f"couldn't find key token in Secret {namespace}/hf-token"


def test_an_empty_hugging_face_token_crash_loops(kube, api, dynamic, namespace):
    create_hf_secret(api, namespace, "")
    apply(dynamic, vllm_deployment("emptytoken", namespace, env=HF_ENV, model=GATED_MODEL), namespace)
    pods = wait_for_pods(
        kube,
        namespace,
        "emptytoken",
        lambda p: (
            waiting_reason(p) == "CrashLoopBackOff"
            and p["status"]["containerStatuses"][0]["restartCount"] >= 2
        ),
        "CrashLoopBackOff with restarts",
    )
    logs = k8s.CoreV1Api(api).read_namespaced_pod_log(pods[0]["metadata"]["name"], namespace, tail_lines=1)
    assert "401 Client Error" in logs
    backoff = k8s.CoreV1Api(api).list_namespaced_event(namespace, field_selector="reason=BackOff").items
    assert backoff and backoff[0].count >= 2
    container = pods[0]["status"]["containerStatuses"][0]
    assert pods[0]["status"]["phase"] == "Running"
    assert not is_ready(pods[0])
    assert "Hugging Face token" in container["lastState"]["terminated"]["message"]
    assert "401" in container["lastState"]["terminated"]["message"]


def test_a_gated_model_without_any_token_crash_loops(kube, dynamic, namespace):
    apply(dynamic, vllm_deployment("notoken", namespace, model=GATED_MODEL), namespace)
    pods = wait_for_pods(
        kube, namespace, "notoken", lambda p: waiting_reason(p) == "CrashLoopBackOff", "CrashLoopBackOff"
    )
    assert "401" in pods[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"]


def test_a_missing_compute_class_leaves_pods_unschedulable_until_it_exists(kube, api, dynamic, namespace):
    class_name = f"class-{namespace}"
    apply(
        dynamic,
        vllm_deployment("gpu", namespace, node_selector={"cloud.google.com/compute-class": class_name}),
        namespace,
    )
    pods = wait_for_pods(
        kube,
        namespace,
        "gpu",
        lambda p: (condition_of(p, "PodScheduled") or {}).get("reason") == "Unschedulable",
        "an Unschedulable pod",
    )
    scheduled = condition_of(pods[0], "PodScheduled")
    assert scheduled["status"] == "False" and class_name in scheduled["message"]
    assert events_of(api, namespace, pods[0]["metadata"]["name"]) == {
        "FailedScheduling": scheduled["message"]
    }
    assert pods[0]["status"]["phase"] == "Pending"

    compute_class = {
        "apiVersion": "cloud.google.com/v1",
        "kind": "ComputeClass",
        "metadata": {"name": class_name},
        "spec": {"priorities": [{"gpu": {"type": "nvidia-l4", "count": 1}, "spot": True}]},
    }
    apply(dynamic, compute_class)
    wait_for_pods(kube, namespace, "gpu", is_ready, "the pod to schedule once the ComputeClass exists")


def test_pods_never_ready_behaviour_keeps_readiness_failing(sandbox, clean_faults, kube, dynamic, namespace):
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "pods_never_ready", namespace=namespace)
    apply(dynamic, vllm_deployment("stuck", namespace), namespace)
    # The positive marker that the kubelet has had its chance: the failed readiness probe's event,
    # which the pod controller records only once the model has loaded.
    pods = wait_for_pods(
        kube,
        namespace,
        "stuck",
        lambda p: "Unhealthy" in pod_event_reasons(kube, namespace, p["metadata"]["name"]),
        "the readiness probe's Unhealthy event",
    )
    assert pods[0]["status"]["phase"] == "Running" and not is_ready(pods[0])
    assert pods[0]["status"]["containerStatuses"][0]["state"].get("running")


def test_deleted_pods_are_replaced(kube, api, dynamic, namespace):
    apply(dynamic, vllm_deployment("heal", namespace), namespace)
    first = wait_for_pods(kube, namespace, "heal", is_ready, "a Ready pod")[0]["metadata"]["name"]
    k8s.CoreV1Api(api).delete_namespaced_pod(first, namespace)
    replacement = wait_for_pods(
        kube, namespace, "heal", lambda p: p["metadata"]["name"] != first, "a new pod"
    )
    assert len(replacement) == 1


# -- gateways, routes, pools -----------------------------------------------------------------------


def gateway(name: str, namespace: str, class_name: str = "gke-l7-regional-external-managed") -> dict:
    return {
        "apiVersion": GATEWAY_V1,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }


def http_route(name: str, namespace: str, gateway_name: str, backend: dict) -> dict:
    return {
        "apiVersion": GATEWAY_V1,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend]}
            ],
        },
    }


def inference_pool(name: str, namespace: str, picker: str) -> dict:
    return {
        "apiVersion": POOL_V1,
        "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "vllm"}},
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": picker, "port": {"number": 9002}},
        },
    }


POOL_BACKEND = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}


def stored(kube, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
    return kube.run(kube.cluster.store.get, api_version, kind, namespace, name)


def wait_for_gateway_verdict(kube, namespace: str, name: str) -> dict:
    """The Gateway once the controller has judged it after its programming delay: Programmed is no
    longer "Pending" (the positive marker that "not programmed" is a verdict, not a slow controller)."""
    return kube.wait_for(
        lambda: (
            (g := kube.cluster.store.get(GATEWAY_V1, "Gateway", namespace, name))
            and (condition_of(g, "Programmed") or {}).get("reason") not in (None, "Pending")
            and g
        ),
        what=f"the controller's verdict on Gateway {namespace}/{name}",
    )


@pytest.fixture(scope="module")
def subnetless(sandbox):
    """A second cluster whose VPC has no proxy-only subnet."""
    cluster = start_cluster(sandbox)
    token = sandbox.run(sandbox.sandbox.tokens.mint)
    with tempfile.TemporaryDirectory() as workdir:
        handle = ClusterHandle(sandbox, cluster, token, Path(workdir))
        with handle.api_client() as api_client:
            yield handle, DynamicClient(api_client)
    sandbox.call(cluster.stop)


def test_gateway_without_a_proxy_only_subnet_is_not_programmed(subnetless):
    kube, dynamic = subnetless
    apply(dynamic, gateway("gw", "default"), "default")
    status = wait_for_gateway_verdict(kube, "default", "gw")["status"]
    assert condition_of({"status": status}, "Accepted")["status"] == "True"
    programmed = condition_of({"status": status}, "Programmed")
    assert programmed["status"] == "False"
    assert "proxy-only subnet" in programmed["message"]
    assert not status.get("addresses")

    add_proxy_only_subnet(kube)  # fixed later: the controller re-checks
    kube.wait_for(
        lambda: (
            (stored_gw := kube.cluster.store.get(GATEWAY_V1, "Gateway", "default", "gw"))
            and stored_gw["status"].get("addresses")
        ),
        timeout=5,
        what="the Gateway to be programmed once the subnet exists",
    )


def test_gateway_is_programmed_with_a_stable_address(kube, dynamic, namespace):
    add_proxy_only_subnet(kube)
    apply(dynamic, gateway("inference-gateway", namespace), namespace)
    programmed = kube.wait_for(
        lambda: (
            (g := kube.cluster.store.get(GATEWAY_V1, "Gateway", namespace, "inference-gateway"))
            and (condition_of(g, "Programmed") or {}).get("status") == "True"
            and g
        ),
        what="a programmed Gateway",
    )
    address = programmed["status"]["addresses"][0]
    assert address["type"] == "IPAddress" and ipaddress.ip_address(address["value"]).is_loopback
    assert programmed["status"]["listeners"][0]["name"] == "http"

    changed = gateway("inference-gateway", namespace)
    changed["spec"]["listeners"][0]["port"] = 8080
    apply(dynamic, changed, namespace)
    again = kube.wait_for(
        lambda: (
            (g := kube.cluster.store.get(GATEWAY_V1, "Gateway", namespace, "inference-gateway"))
            and condition_of(g, "Programmed")["observedGeneration"] == 2
            and g
        ),
        what="the update to be observed",
    )
    assert again["status"]["addresses"][0]["value"] == address["value"]


def test_gateway_never_programmed_behaviour(sandbox, clean_faults, kube, dynamic, namespace):
    add_proxy_only_subnet(kube)
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "gateway_never_programmed", namespace=namespace)
    apply(dynamic, gateway("blocked", namespace), namespace)
    blocked = wait_for_gateway_verdict(kube, namespace, "blocked")
    assert condition_of(blocked, "Programmed")["status"] == "False"
    assert "gateway_never_programmed" in condition_of(blocked, "Programmed")["message"]
    assert not blocked["status"].get("addresses")


def test_gateway_of_an_unknown_class_is_not_accepted(kube, dynamic, namespace):
    apply(dynamic, gateway("odd", namespace, class_name="no-such-class"), namespace)
    odd = kube.wait_for(
        lambda: (
            (g := kube.cluster.store.get(GATEWAY_V1, "Gateway", namespace, "odd"))
            and condition_of(g, "Accepted")
            and g
        ),
        what="the Gateway's Accepted condition",
    )
    assert condition_of(odd, "Accepted")["status"] == "False"
    assert "no-such-class" in condition_of(odd, "Accepted")["message"]


def test_route_and_pool_status_follow_their_references(kube, api, dynamic, namespace):
    add_proxy_only_subnet(kube)
    apply(dynamic, gateway("inference-gateway", namespace), namespace)
    apply(dynamic, http_route("llm-route", namespace, "inference-gateway", POOL_BACKEND), namespace)

    def route_condition(type_: str) -> dict | None:
        route = kube.cluster.store.get(GATEWAY_V1, "HTTPRoute", namespace, "llm-route")
        parents = (route.get("status") or {}).get("parents") or []
        return condition_of({"status": parents[0]}, type_) if parents else None

    missing = kube.wait_for(
        lambda: (c := route_condition("ResolvedRefs")) and c["status"] == "False" and c,
        what="BackendNotFound",
    )
    assert missing["reason"] == "BackendNotFound"

    apply(dynamic, inference_pool("pool", namespace, picker="pool-epp"), namespace)
    kube.wait_for(
        lambda: (c := route_condition("ResolvedRefs")) and c["status"] == "True", what="resolved refs"
    )
    assert kube.run(route_condition, "Accepted")["status"] == "True"

    def pool_parent() -> dict | None:
        pool = kube.cluster.store.get(POOL_V1, "InferencePool", namespace, "pool")
        parents = (pool.get("status") or {}).get("parents") or []
        return parents[0] if parents else None

    parent = kube.wait_for(pool_parent, what="the pool's parent Gateway")
    assert parent["parentRef"]["name"] == "inference-gateway"
    assert condition_of({"status": parent}, "ResolvedRefs")["reason"] == "InvalidExtensionRef"

    k8s.CoreV1Api(api).create_namespaced_service(
        namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="pool-epp"),
            spec=k8s.V1ServiceSpec(selector={"app": "pool-epp"}, ports=[k8s.V1ServicePort(port=9002)]),
        ),
    )
    kube.wait_for(
        lambda: (p := pool_parent()) and condition_of({"status": p}, "ResolvedRefs")["status"] == "True",
        what="the endpoint picker to resolve",
    )


# -- versions ---------------------------------------------------------------------------------------


def test_inference_pool_crd_is_preinstalled_only_from_gke_1_34_0_gke_1626000(sandbox):
    def served(version: str) -> bool:
        cluster = start_cluster(sandbox, version=version)
        try:
            return sandbox.run(cluster.registry.by_kind, POOL_V1, "InferencePool") is not None
        finally:
            sandbox.call(cluster.stop)

    assert served("1.34.0-gke.1626000")
    assert not served("1.34.0-gke.1625999")
    assert not served("1.33.5-gke.1000000")


def test_a_missing_config_map_volume_keeps_the_pod_creating(kube, api, dynamic, namespace):
    manifest = vllm_deployment("epp", namespace)
    pod_spec = manifest["spec"]["template"]["spec"]
    pod_spec["containers"][0]["image"] = "registry.k8s.io/gateway-api-inference-extension/epp:v1.0.1"
    pod_spec["containers"][0]["args"] = ["--pool-name", "pool"]
    pod_spec["containers"][0]["volumeMounts"] = [{"name": "plugins-config-volume", "mountPath": "/config"}]
    pod_spec["volumes"] = [{"name": "plugins-config-volume", "configMap": {"name": "epp-config"}}]
    apply(dynamic, manifest, namespace)
    pods = wait_for_pods(
        kube, namespace, "epp", lambda p: waiting_reason(p) == "ContainerCreating", "ContainerCreating"
    )
    message = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert (
        message
        == 'MountVolume.SetUp failed for volume "plugins-config-volume" : configmap "epp-config" not found'
    )

    k8s.CoreV1Api(api).create_namespaced_config_map(
        namespace,
        k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="epp-config"), data={"default-plugins.yaml": "{}"}),
    )
    wait_for_pods(kube, namespace, "epp", is_ready, "the pod to start once the ConfigMap exists")
