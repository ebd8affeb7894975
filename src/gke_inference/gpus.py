"""What a GPU can hold and what GKE Autopilot allows on it: the DAG's pre-flight arithmetic.

vLLM refuses to start when one request of `max_model_len` tokens does not fit in the KV cache
left after the weights; on GKE that is a crash loop found 20+ minutes and a GPU node later. The
same arithmetic here lets plan_run refuse such a run before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
GB = 10**9

# GPU memory per type, as Google's GPU table states it ("24 GB GDDR6", "40 GB HBM2", ...):
# https://cloud.google.com/compute/docs/gpus (decimal GB; CUDA reports a little less, e.g. an L4
# shows about 22 GiB, which the activation reserve below absorbs).
GPU_MEMORY_GB = {
    "nvidia-l4": 24,
    "nvidia-tesla-a100": 40,
    "nvidia-a100-80gb": 80,
    "nvidia-h100-80gb": 80,
    "nvidia-h200-141gb": 141,
}


@dataclass(frozen=True)
class AutopilotCaps:
    """The most one Pod may request on a node with this GPU type and count (requests above are refused)."""

    cpu: float
    memory_gib: float
    ephemeral_storage_gib: float


# GKE Autopilot: the GPU counts a Pod may request per type, and the maximum CPU / memory /
# ephemeral storage for each count ("Minimum and maximum values for the Accelerator compute
# class"): https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-resource-requests
# and https://cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus ("Request GPUs").
# Requests below the minimum are raised by Autopilot; requests above the maximum are refused by
# GKE Warden (autogke-pod-limit-constraints), e.g. "Total cpu requested by containers for workload
# '...' is higher than the Autopilot maximum of '11'" / "'74Gi'" for one A100 40GB
# (argoproj/argo-workflows#13073). Each cap sits just under the machine that hosts the count
# (g2-standard-32 for one L4, g2-standard-24 for two, a2-highgpu-1g for one A100 ...).
EPHEMERAL_STORAGE_MAX_GIB = 122  # GPU Pods without local SSD
AUTOPILOT_GPU_CAPS: dict[str, dict[int, AutopilotCaps]] = {
    "nvidia-l4": {
        1: AutopilotCaps(31, 115, EPHEMERAL_STORAGE_MAX_GIB),
        2: AutopilotCaps(23, 83, EPHEMERAL_STORAGE_MAX_GIB),
        4: AutopilotCaps(47, 177, EPHEMERAL_STORAGE_MAX_GIB),
        8: AutopilotCaps(95, 363, EPHEMERAL_STORAGE_MAX_GIB),
    },
    "nvidia-tesla-a100": {
        1: AutopilotCaps(11, 74, EPHEMERAL_STORAGE_MAX_GIB),
        2: AutopilotCaps(22, 148, EPHEMERAL_STORAGE_MAX_GIB),
        4: AutopilotCaps(46, 300, EPHEMERAL_STORAGE_MAX_GIB),
        8: AutopilotCaps(94, 616, EPHEMERAL_STORAGE_MAX_GIB),
        16: AutopilotCaps(94, 1250, EPHEMERAL_STORAGE_MAX_GIB),
    },
    "nvidia-a100-80gb": {
        1: AutopilotCaps(11, 148, EPHEMERAL_STORAGE_MAX_GIB),
        2: AutopilotCaps(22, 310, EPHEMERAL_STORAGE_MAX_GIB),
        4: AutopilotCaps(46, 632, EPHEMERAL_STORAGE_MAX_GIB),
        8: AutopilotCaps(94, 1264, EPHEMERAL_STORAGE_MAX_GIB),
    },
    "nvidia-h100-80gb": {
        1: AutopilotCaps(25, 225, EPHEMERAL_STORAGE_MAX_GIB),
        2: AutopilotCaps(51, 450, EPHEMERAL_STORAGE_MAX_GIB),
        4: AutopilotCaps(103, 900, EPHEMERAL_STORAGE_MAX_GIB),
        8: AutopilotCaps(207, 1800, EPHEMERAL_STORAGE_MAX_GIB),
    },
    "nvidia-h200-141gb": {
        8: AutopilotCaps(224, 2952, EPHEMERAL_STORAGE_MAX_GIB),
    },
}


def allowed_gpu_counts(gpu_type: str) -> list[int]:
    return sorted(AUTOPILOT_GPU_CAPS.get(gpu_type, {}))


@dataclass(frozen=True)
class ModelShape:
    """What the KV cache arithmetic needs from a model's config.json (weights in bf16)."""

    parameter_bytes: int
    num_layers: int  # num_hidden_layers
    num_kv_heads: int  # num_key_value_heads
    head_dim: int  # hidden_size / num_attention_heads
    max_context: int  # max_position_embeddings: vLLM's max_model_len when none is given


# From each model's config.json on the Hugging Face Hub and its parameter count (model card /
# safetensors index total_size): https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct
# (8,030,261,248 parameters; 32 layers, 8 KV heads, 4096/32 = 128 head dim, 131072 positions) and
# https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct (70,553,706,496 parameters; 80 layers,
# 8 KV heads, 8192/64 = 128 head dim, 131072 positions).
MODELS: dict[str, ModelShape] = {
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(8_030_261_248 * 2, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-8B": ModelShape(8_030_261_248 * 2, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-70B-Instruct": ModelShape(70_553_706_496 * 2, 80, 8, 128, 131072),
}

# vLLM's defaults: --gpu-memory-utilization 0.9 and --block-size 16 (vllm/engine/arg_utils.py).
GPU_MEMORY_UTILIZATION = 0.9
BLOCK_SIZE = 16
KV_DTYPE_BYTES = 2  # bf16 KV cache, the model's dtype
# Besides the weights, vLLM's profiling run (vllm/v1/worker/gpu_worker.py
# determine_available_memory) charges the peak activation memory of a dummy batch and non-torch
# memory (CUDA context, cuBLAS/NCCL buffers) before sizing the KV cache. About 1.5 GiB per GPU for
# an 8B model at the default batch size.
ACTIVATION_RESERVE_BYTES = int(1.5 * GIB)


@dataclass(frozen=True)
class KvCacheFit:
    """The numbers behind "does max_model_len fit": per GPU, as vLLM computes them per worker."""

    gpu_type: str
    gpu_count: int
    utilization: float
    max_model_len: int
    weight_bytes: int  # per GPU (sharded over tensor parallel)
    kv_cache_bytes: int  # per GPU, what is left for the KV cache (may be <= 0)
    per_token_bytes: int  # per GPU
    max_tokens: int  # whole blocks that fit: the engine's KV-cache capacity in tokens

    @property
    def needed_bytes(self) -> int:
        """One request of max_model_len tokens, in whole blocks (vLLM's max_memory_usage_bytes)."""
        return -(-self.max_model_len // BLOCK_SIZE) * BLOCK_SIZE * self.per_token_bytes

    @property
    def fits(self) -> bool:
        return self.kv_cache_bytes > 0 and self.max_model_len <= self.max_tokens

    def describe(self) -> str:
        """Totals over the pod's GPUs, in GiB."""
        count = self.gpu_count
        return (
            f"max_model_len {self.max_model_len} needs {self.needed_bytes * count / GIB:.1f} GiB of KV cache; "
            f"{self.gpu_type} x{count} at {self.utilization:g} leaves "
            f"{max(self.kv_cache_bytes, 0) * count / GIB:.1f} GiB after "
            f"{self.weight_bytes * count / GIB:.1f} GiB of weights; at most {self.max_tokens} tokens fit"
        )


def kv_cache_fit(
    model: ModelShape,
    gpu_type: str,
    gpu_count: int,
    max_model_len: int,
    utilization: float = GPU_MEMORY_UTILIZATION,
) -> KvCacheFit:
    """vLLM's sizing: budget = GPU memory x utilization, minus weights/TP, minus the profiling reserve."""
    budget = int(GPU_MEMORY_GB[gpu_type] * GB * utilization)
    weight_bytes = -(-model.parameter_bytes // gpu_count)
    kv_cache_bytes = budget - weight_bytes - ACTIVATION_RESERVE_BYTES
    # Tensor parallelism splits the KV heads; with fewer heads than GPUs each GPU keeps one.
    kv_heads = max(1, model.num_kv_heads // gpu_count)
    per_token = 2 * model.num_layers * kv_heads * model.head_dim * KV_DTYPE_BYTES
    blocks = max(kv_cache_bytes, 0) // (per_token * BLOCK_SIZE)
    return KvCacheFit(
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        utilization=utilization,
        max_model_len=max_model_len,
        weight_bytes=weight_bytes,
        kv_cache_bytes=kv_cache_bytes,
        per_token_bytes=per_token,
        max_tokens=blocks * BLOCK_SIZE,
    )
