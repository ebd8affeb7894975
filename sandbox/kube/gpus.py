"""GPUs in the GKE twin: what each type holds, what Autopilot allows on it, and which GPU a pod got.

These tables repeat numbers that src/gke_inference/gpus.py also holds, on purpose: the twin
models GKE and vLLM on its own, from their published sources, so that it can catch the DAG being
wrong rather than agreeing with it. Never import the DAG's code here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

GIB = 1024**3

# Memory per GPU type as Google's GPU table states it (decimal GB):
# https://cloud.google.com/compute/docs/gpus
GPU_MEMORY_BYTES = {
    "nvidia-l4": 24 * 10**9,
    "nvidia-tesla-a100": 40 * 10**9,
    "nvidia-a100-80gb": 80 * 10**9,
    "nvidia-h100-80gb": 80 * 10**9,
    "nvidia-h200-141gb": 141 * 10**9,
}


@dataclass(frozen=True)
class PodCaps:
    cpu: Decimal
    memory: int  # bytes
    ephemeral_storage: int  # bytes


def _caps(cpu: int, memory_gib: int, storage_gib: int = 122) -> PodCaps:
    return PodCaps(Decimal(cpu), memory_gib * GIB, storage_gib * GIB)


# GKE Autopilot, Accelerator compute class: the GPU counts a Pod may request per type and the
# most CPU / memory / ephemeral storage it may request with each count (requests above are refused
# at admission): https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-resource-requests
# and https://cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus. One A100 40GB's
# '11' CPU / '74Gi' caps appear verbatim in a Warden refusal quoted in argoproj/argo-workflows#13073.
AUTOPILOT_GPU_CAPS: dict[str, dict[int, PodCaps]] = {
    "nvidia-l4": {1: _caps(31, 115), 2: _caps(23, 83), 4: _caps(47, 177), 8: _caps(95, 363)},
    "nvidia-tesla-a100": {
        1: _caps(11, 74),
        2: _caps(22, 148),
        4: _caps(46, 300),
        8: _caps(94, 616),
        16: _caps(94, 1250),
    },
    "nvidia-a100-80gb": {1: _caps(11, 148), 2: _caps(22, 310), 4: _caps(46, 632), 8: _caps(94, 1264)},
    "nvidia-h100-80gb": {1: _caps(25, 225), 2: _caps(51, 450), 4: _caps(103, 900), 8: _caps(207, 1800)},
    "nvidia-h200-141gb": {8: _caps(224, 2952)},
}


@dataclass(frozen=True)
class ModelShape:
    parameter_bytes: int  # bf16 weights
    num_layers: int
    num_kv_heads: int
    head_dim: int
    max_context: int  # max_position_embeddings: vLLM's max_model_len by default


# From config.json and the parameter count of each model on the Hugging Face Hub:
# https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json and
# https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct/blob/main/config.json.
MODEL_SHAPES = {
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(8_030_261_248 * 2, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-8B": ModelShape(8_030_261_248 * 2, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-70B-Instruct": ModelShape(70_553_706_496 * 2, 80, 8, 128, 131072),
}

# -- which GPU a pod gets ------------------------------------------------------------------------

ACCELERATOR_SELECTOR = "cloud.google.com/gke-accelerator"
ACCELERATOR_COUNT_SELECTOR = "cloud.google.com/gke-accelerator-count"
COMPUTE_CLASS_SELECTOR = "cloud.google.com/compute-class"
GPU_RESOURCE = "nvidia.com/gpu"
# On GKE a GPU node carries the labels cloud.google.com/gke-accelerator and
# cloud.google.com/gke-accelerator-count. The twin serves no Node objects, so the scheduler copies
# the node's GPU onto the pod under these annotations; the data plane reads them from there.
NODE_ACCELERATOR_ANNOTATION = "sandbox.twin/node-gke-accelerator"
NODE_ACCELERATOR_COUNT_ANNOTATION = "sandbox.twin/node-gke-accelerator-count"


@dataclass(frozen=True)
class PodGpu:
    type: str
    count: int


def requested_gpus(pod_spec: dict[str, Any]) -> int:
    """nvidia.com/gpu over the containers (a limit alone counts as the request, as in Kubernetes)."""
    total = 0
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU_RESOURCE) or (resources.get("limits") or {}).get(
            GPU_RESOURCE
        )
        total += int(parse_quantity(value)) if value is not None else 0
    return total


def gpu_for(pod_spec: dict[str, Any], compute_class: dict[str, Any] | None) -> PodGpu | None:
    """The GPU type and count a pod asks for: its accelerator node selector, or the GPU of the
    ComputeClass it selects (the first priority GKE tries), with its nvidia.com/gpu request."""
    selector = pod_spec.get("nodeSelector") or {}
    count = requested_gpus(pod_spec)
    if selector.get(ACCELERATOR_SELECTOR):
        count = count or int(selector.get(ACCELERATOR_COUNT_SELECTOR) or 0)
        return PodGpu(str(selector[ACCELERATOR_SELECTOR]), count) if count else None
    for priority in ((compute_class or {}).get("spec") or {}).get("priorities") or []:
        gpu = priority.get("gpu") or {}
        if gpu.get("type"):
            count = count or int(gpu.get("count") or 0)
            return PodGpu(str(gpu["type"]), count) if count else None
    return None


def recorded_gpu(pod: dict[str, Any]) -> PodGpu | None:
    """The GPU of the node the pod was scheduled on, as the scheduler recorded it."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    gpu_type = annotations.get(NODE_ACCELERATOR_ANNOTATION)
    count = annotations.get(NODE_ACCELERATOR_COUNT_ANNOTATION)
    if not gpu_type or not str(count or "").isdigit():
        return None
    return PodGpu(gpu_type, int(count))


# -- Kubernetes quantities -----------------------------------------------------------------------

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity ("4", "500m", "16Gi", "1e3") as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match or (match.group(2) and match.group(2) not in _SUFFIXES):
        raise ValueError(f"quantities must match the regular expression, got {value!r}")
    return Decimal(match.group(1)) * Decimal(_SUFFIXES.get(match.group(2), 1))
