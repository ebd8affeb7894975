"""Manifest templates render into valid objects that agree with each other across files."""

from __future__ import annotations

import pytest
from kubernetes.utils import parse_quantity

from gke_inference import manifests
from gke_inference.gpus import AUTOPILOT_GPU_CAPS, GIB
from gke_inference.manifests import ManifestError, kv_cache_metric_for, render
from gke_inference.operators.crds import CRD_SETS
from gke_inference.operators.workloads import WORKLOAD_MANIFESTS
from gke_inference.ownership import K8S_LABELS
from gke_inference.params import build_params

DEFAULTS = {name: param.value for name, param in build_params().items()}
CUSTOM = {
    **DEFAULTS,
    "namespace": "serving",
    "model_name": "Qwen/Qwen2.5-7B-Instruct",
    "model_app_label": "qwen-7b",
    "vllm_image": "vllm/vllm-openai:v0.11.0",
    "replicas": 3,
    "pool_name": "Qwen-Pool-With-A-Rather-Long-Name-For-Truncation",
    "compute_class_name": "gpu-class",
    "reservation_name": "my-reservation",
    "flex_start": False,
    "spot": True,
    "gpu_type": "nvidia-h100-80gb",
    "gpu_count": 2,
    "gateway_name": "edge",
    "gateway_class": "gke-l7-rilb",
    "gateway_port": 8080,
    "inference_extension_version": "v1.0.0",
    "bbr_version": "v1.0.1",
}
ALL_MANIFESTS = ("crds", *WORKLOAD_MANIFESTS)


def objects(params, *paths):
    return [obj for path in paths for obj in render(path, params)]


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def flag(args, name):
    return args[args.index(name) + 1]


@pytest.fixture(params=["defaults", "custom"])
def params(request):
    return DEFAULTS if request.param == "defaults" else CUSTOM


def test_every_object_is_labelled_named_and_namespaced(params):
    for obj in objects(params, *ALL_MANIFESTS):
        metadata = obj["metadata"]
        assert metadata["labels"].items() >= K8S_LABELS.items()
        if obj["kind"] in manifests.CLUSTER_SCOPED_KINDS:
            assert "namespace" not in metadata
        else:
            assert metadata["namespace"] == params["namespace"]


def test_expected_kinds_per_manifest():
    kinds = {path: sorted(o["kind"] for o in render(path, DEFAULTS)) for path in ALL_MANIFESTS}
    assert kinds["crds"] == ["CustomResourceDefinition"] * 3
    assert kinds["model-inference-class.yaml"] == ["ComputeClass"]
    assert kinds["vllm-llama3-1-8b-instruct.yaml"] == ["Deployment"]
    assert kinds["inferencepool"] == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap"]
        + ["Deployment", "Service", "InferencePool", "HealthCheckPolicy", "GCPBackendPolicy"]
    )
    assert kinds["gateway.yaml"] == ["Gateway", "HTTPRoute"]
    assert kinds["body-based-router"] == ["Deployment", "GCPRoutingExtension", "HealthCheckPolicy", "Service"]
    assert kinds["body-routing.yaml"] == ["HTTPRoute"]


def test_crd_sets_match_the_tutorial_branches():
    objective_only = objects(DEFAULTS, *CRD_SETS["objective_only"])
    full = objects(DEFAULTS, *CRD_SETS["full"])
    assert [o["metadata"]["name"] for o in objective_only] == [
        "inferenceobjectives.inference.networking.x-k8s.io"
    ]
    assert sorted(o["metadata"]["name"] for o in full) == [
        "inferenceobjectives.inference.networking.x-k8s.io",
        "inferencepools.inference.networking.k8s.io",
        "inferencepools.inference.networking.x-k8s.io",
    ]
    for crd in full:
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        (version,) = spec["versions"]
        assert version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object" and schema["properties"]["spec"]["type"] == "object"


def test_v1_pool_crd_requires_what_the_pool_sets():
    crd = one(render("crds/inference-pool-v1.yaml", DEFAULTS), "CustomResourceDefinition")
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pool = one(render("inferencepool", DEFAULTS), "InferencePool")
    assert set(spec_schema["required"]) <= set(pool["spec"])
    assert crd["spec"]["names"]["shortNames"] == ["infpool"]


def test_pool_selects_the_model_pods_on_the_vllm_port(params):
    objs = objects(params, "vllm-llama3-1-8b-instruct.yaml", "inferencepool")
    vllm = one(objs, "Deployment", params["model_app_label"])
    pool = one(objs, "InferencePool", params["pool_name"])
    pod_labels = vllm["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert vllm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    vllm_port = int(flag(container(vllm)["args"], "--port"))
    assert pool["spec"]["targetPorts"] == [{"number": vllm_port}]
    assert container(vllm)["ports"][0]["containerPort"] == vllm_port
    health = one(objs, "HealthCheckPolicy", params["pool_name"])
    assert health["spec"]["default"]["config"]["httpHealthCheck"]["port"] == vllm_port
    for policy in (health, one(objs, "GCPBackendPolicy")):
        assert policy["spec"]["targetRef"] == {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": params["pool_name"],
        }


def test_endpoint_picker_is_wired_to_the_pool(params):
    objs = render("inferencepool", params)
    pool = one(objs, "InferencePool")
    epp_ref = pool["spec"]["endpointPickerRef"]
    service = one(objs, "Service", epp_ref["name"])
    assert epp_ref["port"]["number"] in [p["port"] for p in service["spec"]["ports"]]
    epp = one(objs, "Deployment", epp_ref["name"])
    assert service["spec"]["selector"].items() <= epp["spec"]["template"]["metadata"]["labels"].items()
    grpc_port = {p["name"]: p["containerPort"] for p in container(epp)["ports"]}["grpc"]
    assert grpc_port == epp_ref["port"]["number"]
    args = container(epp)["args"]
    assert flag(args, "--pool-name") == params["pool_name"]
    assert flag(args, "--pool-namespace") == params["namespace"]
    assert container(epp)["image"].endswith(":" + params["inference_extension_version"])
    assert epp["spec"]["template"]["spec"]["serviceAccountName"] == epp_ref["name"]
    config_map = one(objs, "ConfigMap", epp_ref["name"])
    assert "default-plugins.yaml" in config_map["data"]
    role_binding = one(objs, "RoleBinding")
    assert role_binding["subjects"][0]["name"] == epp_ref["name"]
    assert role_binding["roleRef"]["name"] == one(objs, "Role")["metadata"]["name"]
    cluster_binding = one(objs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == one(objs, "ClusterRole")["metadata"]["name"]


def test_chart_names_for_the_tutorial_release():
    objs = render("inferencepool", DEFAULTS)
    assert one(objs, "Deployment")["metadata"]["name"] == "vllm-llama-pool-epp"
    assert one(objs, "ClusterRole")["metadata"]["name"] == "vllm-llama-pool-default-epp"


def test_long_pool_names_are_lowercased_and_truncated_like_the_chart():
    epp = one(render("inferencepool", CUSTOM), "Deployment")
    assert epp["metadata"]["name"] == CUSTOM["pool_name"].lower()[:40] + "-epp"


def test_kv_cache_metric_follows_the_vllm_image():
    assert kv_cache_metric_for("vllm/vllm-openai:v0.8.5") == "vllm:gpu_cache_usage_perc"
    assert kv_cache_metric_for("vllm/vllm-openai:v0.11.0") == "vllm:kv_cache_usage_perc"
    assert kv_cache_metric_for("vllm/vllm-openai:latest") == "vllm:kv_cache_usage_perc"
    epp = one(render("inferencepool", DEFAULTS), "Deployment")
    assert flag(container(epp)["args"], "--kv-cache-usage-percentage-metric") == "vllm:gpu_cache_usage_perc"


def test_vllm_deployment(params):
    vllm = one(render("vllm-llama3-1-8b-instruct.yaml", params), "Deployment")
    pod = vllm["spec"]["template"]["spec"]
    main = container(vllm)
    assert vllm["spec"]["replicas"] == params["replicas"]
    assert pod["nodeSelector"] == {"cloud.google.com/compute-class": params["compute_class_name"]}
    assert flag(main["args"], "--model") == params["model_name"]
    assert main["image"] == params["vllm_image"]
    token_env = {e["name"]: e for e in main["env"]}["HUGGING_FACE_HUB_TOKEN"]
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert main["resources"]["limits"]["nvidia.com/gpu"] == params["gpu_count"]
    assert flag(main["args"], "--tensor-parallel-size") == str(params["gpu_count"])
    assert flag(main["args"], "--max-model-len") == str(params["max_model_len"])
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert main[probe]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize(
    "gpu_type, gpu_count", [(t, n) for t, caps in AUTOPILOT_GPU_CAPS.items() for n in caps if n <= 8]
)
def test_vllm_requests_stay_within_autopilot_caps_for_every_gpu_choice(gpu_type, gpu_count):
    params = {**DEFAULTS, "gpu_type": gpu_type, "gpu_count": gpu_count}
    requests = container(one(render("vllm-llama3-1-8b-instruct.yaml", params), "Deployment"))["resources"][
        "requests"
    ]
    caps = AUTOPILOT_GPU_CAPS[gpu_type][gpu_count]
    assert parse_quantity(requests["cpu"]) <= caps.cpu
    assert parse_quantity(requests["memory"]) <= caps.memory_gib * GIB
    assert parse_quantity(requests["ephemeral-storage"]) <= caps.ephemeral_storage_gib * GIB
    assert requests["nvidia.com/gpu"] == gpu_count


def test_compute_class_priorities_follow_the_params():
    default_class = one(render("model-inference-class.yaml", DEFAULTS), "ComputeClass")
    rules = default_class["spec"]["priorities"]
    assert [sorted(set(r) - {"gpu"}) for r in rules] == [["flexStart"], ["spot"]]
    assert all(r["gpu"] == {"type": "nvidia-l4", "count": 1} for r in rules)
    assert default_class["spec"]["whenUnsatisfiable"] == "DoNotScaleUp"
    assert default_class["spec"]["nodePoolAutoCreation"] == {"enabled": True}

    custom = one(render("model-inference-class.yaml", CUSTOM), "ComputeClass")
    rules = custom["spec"]["priorities"]
    assert rules[0]["reservations"] == {"affinity": "Specific", "specific": [{"name": "my-reservation"}]}
    assert rules[1]["spot"] is True and len(rules) == 2
    assert custom["metadata"]["name"] == "gpu-class"


def test_compute_class_without_any_capacity_source_fails_clearly():
    params = {**DEFAULTS, "reservation_name": None, "flex_start": False, "spot": False}
    with pytest.raises(ManifestError, match="at least one capacity source"):
        render("model-inference-class.yaml", params)


def test_gateway_route_and_body_routing(params):
    objs = render("gateway.yaml", params)
    gateway = one(objs, "Gateway")
    catch_all = one(objs, "HTTPRoute")
    assert gateway["metadata"]["name"] == params["gateway_name"]
    assert gateway["spec"]["gatewayClassName"] == params["gateway_class"]
    assert gateway["spec"]["listeners"][0]["port"] == params["gateway_port"]
    assert catch_all["spec"]["parentRefs"][0]["name"] == params["gateway_name"]
    (rule,) = catch_all["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": params["pool_name"]}
    ]

    model_route = one(render("body-routing.yaml", params), "HTTPRoute")
    assert model_route["metadata"]["name"] == catch_all["metadata"]["name"] == "llm-route"
    (model_rule,) = model_route["spec"]["rules"]
    assert model_rule["matches"][0]["headers"] == [
        {"type": "Exact", "name": "X-Gateway-Model-Name", "value": params["model_name"]}
    ]
    assert model_rule["backendRefs"] == rule["backendRefs"]
    assert model_route["spec"]["parentRefs"] == catch_all["spec"]["parentRefs"]


def test_body_based_router_targets_the_gateway(params):
    objs = render("body-based-router", params)
    extension = one(objs, "GCPRoutingExtension")
    assert extension["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": params["gateway_name"]}
    ]
    backend = extension["spec"]["extensionChains"][0]["extensions"][0]["backendRef"]
    service = one(objs, "Service", backend["name"])
    assert backend["port"] == service["spec"]["ports"][0]["port"]
    router = one(objs, "Deployment", backend["name"])
    assert service["spec"]["selector"].items() <= router["spec"]["template"]["metadata"]["labels"].items()
    assert container(router)["image"].endswith(":" + params["bbr_version"])
    health = one(objs, "HealthCheckPolicy", "bbr-healthcheck")
    assert health["spec"]["targetRef"]["name"] == service["metadata"]["name"]
    health_port = health["spec"]["default"]["config"]["grpcHealthCheck"]["port"]
    assert health_port in [p["containerPort"] for p in container(router)["ports"]]


def test_missing_param_names_the_template_and_the_value():
    params = {k: v for k, v in DEFAULTS.items() if k != "gateway_class"}
    with pytest.raises(ManifestError, match=r"gateway\.yaml.*gateway_class"):
        render("gateway.yaml", params)


def test_unknown_and_escaping_manifest_paths_are_refused():
    with pytest.raises(ManifestError, match="no manifest"):
        render("nope.yaml", DEFAULTS)
    with pytest.raises(ManifestError, match="escapes"):
        render("../../pyproject.toml", DEFAULTS)


def test_template_without_ownership_labels_is_refused(tmp_path):
    (tmp_path / "bare.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\n"
    )
    with pytest.raises(ManifestError, match="ownership labels"):
        render("bare.yaml", DEFAULTS, root=tmp_path)


def test_values_with_yaml_syntax_stay_strings():
    params = {**DEFAULTS, "model_name": "org/model: with colon # and hash"}
    vllm = one(render("vllm-llama3-1-8b-instruct.yaml", params), "Deployment")
    assert flag(container(vllm)["args"], "--model") == "org/model: with colon # and hash"
