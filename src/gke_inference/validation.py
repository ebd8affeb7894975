"""Checks that need several params at once; they run before anything is created."""

from __future__ import annotations

import difflib
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import combinations

from gke_inference.gpus import MODELS, allowed_gpu_counts, kv_cache_fit

# Google's minimum sizes for the ranges the tutorial creates.
SMALLEST_PREFIX = {
    "subnet_range": 29,
    "pods_range": 21,  # Autopilot reserves a /24 per node out of the pod range
    "services_range": 27,
    "proxy_subnet_range": 26,
}
RANGE_TITLES = {
    "subnet_range": "node subnet range",
    "pods_range": "pods range",
    "services_range": "services range",
    "proxy_subnet_range": "proxy-only subnet range",
}

# GCP's rules for subnet primary and secondary IPv4 ranges, from "Subnets > IPv4 subnet ranges"
# (https://cloud.google.com/vpc/docs/subnets#valid-ranges and #restricted-ranges). Valid: RFC 1918,
# 100.64.0.0/10 (RFC 6598), 192.0.0.0/24 (RFC 6890), the documentation ranges 192.0.2.0/24,
# 198.51.100.0/24, 203.0.113.0/24 (RFC 5737), 192.88.99.0/24 (RFC 7526), 198.18.0.0/15 (RFC 2544),
# 240.0.0.0/4 (class E), and "privately used public IPv4 addresses": any other public range, as long
# as it does not belong to a prohibited range. Prohibited: the ranges below, and the public ranges
# of Google APIs and services (only the documented Private Google Access VIPs are listed here; the
# whole netblock list, https://www.gstatic.com/ipranges/goog.json, changes and is not copied).
PROHIBITED_RANGES = {
    ipaddress.IPv4Network("0.0.0.0/8"): "the current network (RFC 1122)",
    ipaddress.IPv4Network("127.0.0.0/8"): "loopback (RFC 1122)",
    ipaddress.IPv4Network("169.254.0.0/16"): "link-local (RFC 3927)",
    ipaddress.IPv4Network("224.0.0.0/4"): "multicast (RFC 5771)",
    ipaddress.IPv4Network("255.255.255.255/32"): "limited broadcast (RFC 919)",
    ipaddress.IPv4Network("199.36.153.4/30"): "restricted.googleapis.com (Google APIs)",
    ipaddress.IPv4Network("199.36.153.8/30"): "private.googleapis.com (Google APIs)",
}

# Names a fresh GKE cluster already has and the DAG must not take over. Built-in ComputeClasses of
# Autopilot: https://cloud.google.com/kubernetes-engine/docs/concepts/about-built-in-compute-classes
BUILT_IN_COMPUTE_CLASSES = frozenset({"autopilot", "autopilot-spot"})

# The manifests one build applies, in order (dags/gke_inference_gateway.py). body-routing.yaml is left
# out on purpose: its HTTPRoute replaces gateway.yaml's route of the same name.
BUILD_MANIFESTS = (
    "model-inference-class.yaml",
    "vllm-llama3-1-8b-instruct.yaml",
    "inferencepool",
    "gateway.yaml",
    "body-based-router",
)


class InvalidParams(ValueError):
    """The params cannot describe a valid environment; nothing should be created."""


def validate_params(params: Mapping, conf: Mapping | None = None, known: Iterable[str] = ()) -> None:
    """Refuse params that cannot build one environment, and (given the run's conf and the declared
    param names) conf keys that are not params: Airflow 3.3 merges those into the params without a
    schema (SerializedParamsDict.deep_merge), so neither the form nor the REST API refuses them."""
    problems = unknown_key_problems(conf, known) + _whole_number_problems(params)
    if not problems:
        problems = (
            _range_problems(params)
            + _name_problems(params)
            + _capacity_problems(params)
            + _gpu_problems(params)
            + _check_problems(params)
            + _namespace_problems(params)
        )
    if not problems:
        problems = _collision_problems(params)
    _raise_if_any(problems)


def _raise_if_any(problems: list[str]) -> None:
    if problems:
        raise InvalidParams("Invalid params (nothing was created):\n- " + "\n- ".join(problems))


def unknown_key_problems(conf: Mapping | None, known: Iterable[str]) -> list[str]:
    known = sorted(known)
    return [_unknown_key_problem(key, known) for key in (conf or {}) if key not in known]


def _unknown_key_problem(key: str, known: list[str]) -> str:
    by_case = [name for name in known if name.lower() == str(key).lower()]
    nearest = by_case or difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.6)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else f"; the params are: {', '.join(known)}"
    return f"unknown param {key!r}{hint}"


def integer_params() -> frozenset[str]:
    from gke_inference.params import build_params

    return frozenset(name for name, p in build_params().items() if p.schema.get("type") == "integer")


def _whole_number_problems(params: Mapping) -> list[str]:
    """JSON schema's "integer" accepts 2.0, which every template then renders as "2.0" and int()
    refuses in the task that reads it, after the environment is built. Refused here instead."""
    return [
        f"{key}: {params[key]!r} is written as a decimal; write it as a whole number ({int(params[key])})"
        for key in sorted(integer_params())
        if isinstance(params.get(key), float)
    ]


def subnet_range_problem(network: ipaddress.IPv4Network) -> str | None:
    """Why GCP refuses this subnet range (primary or secondary), or None when it accepts it."""
    for prohibited, title in PROHIBITED_RANGES.items():
        if network.overlaps(prohibited):
            return (
                f"{network} overlaps {prohibited}, {title}, which GCP prohibits in subnets "
                "(https://cloud.google.com/vpc/docs/subnets#restricted-ranges)"
            )
    return None


def _range_problems(params: Mapping) -> list[str]:
    problems: list[str] = []
    networks: dict[str, ipaddress.IPv4Network] = {}
    for key, title in RANGE_TITLES.items():
        value = params[key]
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            problems.append(f"{key}: {value!r} is not a valid network range ({err})")
            continue
        refusal = subnet_range_problem(network)
        if refusal:
            problems.append(f"{key}: {refusal}")
        if network.prefixlen > SMALLEST_PREFIX[key]:
            problems.append(
                f"{key}: the {title} must be /{SMALLEST_PREFIX[key]} or larger, got /{network.prefixlen}"
            )
        networks[key] = network
    for (key_a, net_a), (key_b, net_b) in combinations(networks.items(), 2):
        if net_a.overlaps(net_b):
            problems.append(f"{key_a} {net_a} overlaps {key_b} {net_b}: ranges in one VPC must not overlap")
    return problems


def _name_problems(params: Mapping) -> list[str]:
    problems: list[str] = []
    if params["pods_range_name"] == params["services_range_name"]:
        problems.append("pods_range_name and services_range_name must differ")
    if params["subnet_name"] == params["proxy_subnet_name"]:
        problems.append("subnet_name and proxy_subnet_name must differ")
    if params["model_name"] == params["wrong_model_name"]:
        problems.append("wrong_model_name must differ from model_name, or the rejection check proves nothing")
    if params["pool_name"] == params["model_app_label"]:
        problems.append(
            "pool_name must differ from model_app_label (the Endpoint Picker's objects derive from it)"
        )
    if params["compute_class_name"] in BUILT_IN_COMPUTE_CLASSES:
        problems.append(
            f"compute_class_name: {params['compute_class_name']!r} is a ComputeClass GKE Autopilot "
            "builds in; choose another name"
        )
    if params["model_app_label"] == _body_based_router_name():
        problems.append(
            f"model_app_label: {params['model_app_label']!r} is the body-based router's app label; the "
            "model pods wait and the InferencePool would select the router's pods"
        )
    return problems


def _body_based_router_name() -> str:
    from gke_inference.manifests import NAMES

    return NAMES["body_based_router"]


def _capacity_problems(params: Mapping) -> list[str]:
    """The ComputeClass lists only these sources and never falls back to on-demand VMs
    (whenUnsatisfiable: DoNotScaleUp), so with none of them no GPU node can ever start."""
    if params.get("reservation_name") or params["flex_start"] or params["spot"]:
        return []
    return [
        "no GPU capacity source: reservation_name is empty and flex_start and spot are both false; the "
        "model pods would never be scheduled. Set reservation_name, flex_start or spot"
    ]


def _gpu_problems(params: Mapping) -> list[str]:
    """GPU counts GKE Autopilot refuses, and a max_model_len whose KV cache vLLM cannot fit."""
    gpu_type, gpu_count = params["gpu_type"], params["gpu_count"]
    allowed = allowed_gpu_counts(gpu_type)
    if gpu_count not in allowed:
        return [
            f"gpu_count: GKE Autopilot offers {gpu_type} only in counts of "
            f"{', '.join(map(str, allowed))} per pod, got {gpu_count}"
        ]
    model = MODELS.get(params["model_name"])
    if model is None:
        return []  # a model without a known shape is not checked (see the max_model_len param)
    fit = kv_cache_fit(model, gpu_type, gpu_count, params["max_model_len"])
    if fit.fits:
        return []
    return [
        f"max_model_len: {fit.describe()}; vLLM would exit at start-up on every pod. Lower "
        "max_model_len or use more or bigger GPUs (gpu_count, gpu_type)"
    ]


def _check_problems(params: Mapping) -> list[str]:
    """vLLM answers 400 when the prompt plus max_tokens exceed --max-model-len, so a check asking for
    max_tokens >= max_model_len fails only after the whole environment is built."""
    if params["max_tokens"] < params["max_model_len"]:
        return []
    return [
        f"max_tokens {params['max_tokens']} leaves no room for the prompt within max_model_len "
        f"{params['max_model_len']}; vLLM would refuse the chat-completion check. Lower max_tokens"
    ]


def _namespace_problems(params: Mapping) -> list[str]:
    """The DAG creates no Namespace, and a new GKE cluster has only default and the system namespaces
    (kube-system, kube-public, kube-node-lease, gke-*; Autopilot refuses workloads in the managed
    ones). Every apply into any other namespace answers 404 "namespaces ... not found", after the
    cluster is built. A rebuild (every scheduled run) always starts from a new cluster."""
    if params["namespace"] == "default":
        return []
    return [
        f"namespace: {params['namespace']!r} does not exist on a new cluster and the DAG does not create "
        "namespaces (the tutorial deploys into default); every Kubernetes apply would fail after the "
        "cluster is built. Use 'default'"
    ]


def _collision_problems(params: Mapping) -> list[str]:
    """Two manifests naming the same object: the second apply would overwrite the first."""
    from gke_inference.kube_objects import object_ref
    from gke_inference.manifests import NAMES, ManifestError, render

    refs: list[str] = [f"Secret/{params['namespace']}/{NAMES['hf_secret']}"]
    try:
        for manifest in BUILD_MANIFESTS:
            refs += [object_ref(obj) for obj in render(manifest, params)]
    except ManifestError as err:
        return [f"the manifests cannot be rendered from these params: {err}"]
    return [
        f"two objects named {ref}: choose params whose names differ (gateway_name, pool_name, "
        "model_app_label, compute_class_name)"
        for ref, count in Counter(refs).items()
        if count > 1
    ]


def effective_mode(requested_mode: str, run_type: str | None, schedule_mode: str = "rebuild") -> str:
    """A scheduled run does the deployment's schedule mode (GKE_INFERENCE_SCHEDULE_MODE: rebuild from
    scratch, or ensure: repair drift and keep the endpoint up); any other run does what it was asked."""
    return schedule_mode if run_type == "scheduled" else requested_mode


def effective_on_failure(requested: str | None, run_type: str | None) -> str:
    """After a failed build, a manual run keeps what it built for debugging; a scheduled run, which
    nobody watches, tears it down so a GPU node does not bill until someone notices."""
    if requested:
        return requested
    return "teardown" if run_type == "scheduled" else "keep"
