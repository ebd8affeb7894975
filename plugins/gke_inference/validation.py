"""Checks that need several params at once; they run before anything is created."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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


class InvalidParams(ValueError):
    """The params cannot describe a valid environment; nothing should be created."""


def validate_params(params: Mapping) -> None:
    problems = _range_problems(params) + _name_problems(params) + _gpu_problems(params)
    if problems:
        raise InvalidParams("Invalid params (nothing was created):\n- " + "\n- ".join(problems))


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
        if not network.is_private:
            problems.append(f"{key}: {value} is not a private (RFC 1918) range")
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
    return problems


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


def effective_mode(requested_mode: str, run_type: str | None) -> str:
    """A scheduled run rebuilds the environment from scratch; any other run does what it was asked."""
    return "rebuild" if run_type == "scheduled" else requested_mode
