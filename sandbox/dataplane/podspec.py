"""Read a pod's vLLM container: which models it serves, on which port, with which engine limits."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sandbox.kube.gpus import GIB, GPU_MEMORY_BYTES, MODEL_SHAPES, ModelShape, PodGpu, recorded_gpu

VLLM_DEFAULT_PORT = 8000
VLLM_DEFAULT_MAX_NUM_SEQS = 256
VLLM_DEFAULT_BLOCK_SIZE = 16
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vllm/engine/arg_utils.py EngineArgs
# About 32k tokens of KV cache: what an 8B model in bf16 leaves free on a 24 GB L4. Used when the
# pod names no GPU (CPU tests) or serves a model the twin has no shape for.
DEFAULT_GPU_BLOCKS = 2048
# Llama 3.1's context window, which vLLM uses when --max-model-len is not given.
DEFAULT_MAX_MODEL_LEN = 131072
KV_DTYPE_BYTES = 2  # bf16, the models' dtype
# vLLM's profiling run charges the peak activation memory of a dummy batch plus non-torch memory
# (CUDA context, cuBLAS and NCCL buffers) before it sizes the KV cache
# (vllm/v1/worker/gpu_worker.py, Worker.determine_available_memory): about 1.5 GiB for an 8B model.
PROFILING_RESERVE_BYTES = int(1.5 * GIB)


@dataclass(frozen=True)
class ModelServerSpec:
    served_models: tuple[str, ...]  # the first is the base model; LoRA adapters follow
    port: int
    max_num_seqs: int
    kv_cache_tokens: int
    max_model_len: int
    lora_adapters: tuple[str, ...] = ()  # the --lora-modules names
    max_loras: int | None = None  # --max-loras (default 1) with --enable-lora; None without LoRA
    log_requests: bool = True  # False with --disable-log-requests


def _flag_values(argv: list[str]) -> dict[str, list[str]]:
    """Map each --flag to the values that follow it (`--flag=v` and `--flag v1 v2` both work)."""
    flags: dict[str, list[str]] = {}
    current: str | None = None
    for token in argv:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            current = name.replace("_", "-")
            flags.setdefault(current, [])
            if has_value:
                flags[current].append(value)
                current = None
        elif current is not None:
            flags[current].append(token)
    return flags


def _is_vllm(container: dict, flags: dict[str, list[str]]) -> bool:
    return "model" in flags or "vllm" in str(container.get("image", ""))


def _int_flag(flags: dict[str, list[str]], names: tuple[str, ...], default: int) -> int:
    for name in names:
        values = flags.get(name)
        if values:
            try:
                return int(values[0])
            except ValueError:
                raise ValueError(f"--{name} must be an integer, got {values[0]!r}") from None
    return default


def _lora_names(values: list[str]) -> list[str]:
    names = []
    for value in values:
        if value.lstrip().startswith("{"):
            names.append(str(json.loads(value)["name"]))
        else:
            names.append(value.split("=", 1)[0])
    return names


def _port(container: dict, flags: dict[str, list[str]]) -> int:
    if flags.get("port"):
        return _int_flag(flags, ("port",), VLLM_DEFAULT_PORT)
    for port in container.get("ports") or []:
        if port.get("name") == "http" and port.get("containerPort"):
            return int(port["containerPort"])
    return VLLM_DEFAULT_PORT


def model_server_spec(pod: dict) -> ModelServerSpec | None:
    """The spec of the pod's first vLLM container, or None when the pod runs no vLLM."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        flags = _flag_values(argv)
        if not _is_vllm(container, flags):
            continue
        base = (flags.get("model") or [None])[0] or _positional_model(argv)
        served = flags.get("served-model-name") or ([base] if base else [])
        if not served:
            continue
        sizing = _kv_cache_sizing(pod, flags, base)
        block_size = _int_flag(flags, ("block-size",), VLLM_DEFAULT_BLOCK_SIZE)
        blocks = (
            sizing.num_blocks if sizing is not None and sizing.available_bytes > 0 else DEFAULT_GPU_BLOCKS
        )
        blocks = _int_flag(flags, ("num-gpu-blocks-override",), blocks)
        model = MODEL_SHAPES.get(base or "")
        return ModelServerSpec(
            served_models=tuple(served) + tuple(_lora_names(flags.get("lora-modules", []))),
            port=_port(container, flags),
            max_num_seqs=max(1, _int_flag(flags, ("max-num-seqs", "max-num-seq"), VLLM_DEFAULT_MAX_NUM_SEQS)),
            kv_cache_tokens=max(1, block_size * blocks),
            max_model_len=_max_model_len(flags, model),
            lora_adapters=tuple(_lora_names(flags.get("lora-modules", []))),
            max_loras=_int_flag(flags, ("max-loras",), 1) if "enable-lora" in flags else None,
            log_requests="disable-log-requests" not in flags,
        )
    return None


@dataclass(frozen=True)
class KvCacheSizing:
    """vLLM's KV-cache sizing on one tensor-parallel worker (all workers are alike)."""

    max_model_len: int
    available_bytes: int  # GPU memory x utilization - weights/TP - profiling reserve
    per_token_bytes: int  # 2 (K, V) x layers x KV heads/TP x head dim x dtype bytes
    block_size: int

    @property
    def num_blocks(self) -> int:
        return max(self.available_bytes, 0) // (self.per_token_bytes * self.block_size)

    @property
    def max_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def needed_bytes(self) -> int:
        blocks = -(-self.max_model_len // self.block_size)
        return blocks * self.block_size * self.per_token_bytes


def _max_model_len(flags: dict[str, list[str]], model: ModelShape | None) -> int:
    return _int_flag(flags, ("max-model-len",), model.max_context if model else DEFAULT_MAX_MODEL_LEN)


def _kv_cache_sizing(pod: dict, flags: dict[str, list[str]], base: str | None) -> KvCacheSizing | None:
    """None when the pod runs on no GPU the twin knows or serves a model it has no shape for."""
    gpu: PodGpu | None = recorded_gpu(pod)
    model = MODEL_SHAPES.get(base or "")
    if gpu is None or model is None or gpu.type not in GPU_MEMORY_BYTES:
        return None
    utilization = float((flags.get("gpu-memory-utilization") or [VLLM_DEFAULT_GPU_MEMORY_UTILIZATION])[0])
    tensor_parallel = max(1, _int_flag(flags, ("tensor-parallel-size", "tp"), 1))
    budget = int(GPU_MEMORY_BYTES[gpu.type] * utilization)
    weights = -(-model.parameter_bytes // tensor_parallel)
    kv_heads = max(1, model.num_kv_heads // tensor_parallel)  # replicated when there are fewer than GPUs
    return KvCacheSizing(
        max_model_len=_max_model_len(flags, model),
        available_bytes=budget - weights - PROFILING_RESERVE_BYTES,
        per_token_bytes=2 * model.num_layers * kv_heads * model.head_dim * KV_DTYPE_BYTES,
        block_size=_int_flag(flags, ("block-size",), VLLM_DEFAULT_BLOCK_SIZE),
    )


def engine_startup_error(pod: dict) -> str:
    """The error vLLM's engine exits with when the KV cache cannot hold one max_model_len request
    on the GPUs the pod got, or "" when it starts. Messages as vLLM raises them:
    V1 vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory; V0 (VLLM_USE_V1=0)
    vllm/worker/worker.py raise_if_cache_size_invalid."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        flags = _flag_values(argv)
        if not _is_vllm(container, flags):
            continue
        sizing = _kv_cache_sizing(pod, flags, (flags.get("model") or [None])[0] or _positional_model(argv))
        if sizing is None:
            return ""
        if sizing.available_bytes <= 0:
            return (
                "ValueError: No available memory for the cache blocks. Try increasing "
                "`gpu_memory_utilization` when initializing the engine."
            )
        if sizing.max_model_len <= sizing.max_tokens:
            return ""
        if _uses_v0_engine(container):
            return (
                f"ValueError: The model's max seq len ({sizing.max_model_len}) is larger than the maximum "
                f"number of tokens that can be stored in KV cache ({sizing.max_tokens}). Try increasing "
                "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
            )
        estimated = (
            f"Based on the available memory, the estimated maximum model length is {sizing.max_tokens}."
            if sizing.max_tokens > 0
            else ""
        )
        return (
            "ValueError: To serve at least one request with the models's max seq len "
            f"({sizing.max_model_len}), ({sizing.needed_bytes / GIB:.2f} GiB KV cache is needed, which is "
            f"larger than the available KV cache memory ({sizing.available_bytes / GIB:.2f} GiB). "
            f"{estimated} Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
            "initializing the engine."
        )
    return ""


def _uses_v0_engine(container: dict) -> bool:
    return any(
        env.get("name") == "VLLM_USE_V1" and str(env.get("value", "")).strip() == "0"
        for env in container.get("env") or []
    )


def _positional_model(argv: list[str]) -> str | None:
    """`vllm serve MODEL ...` names the model positionally."""
    for index, token in enumerate(argv[:-1]):
        if token == "serve" and not argv[index + 1].startswith("-"):
            return argv[index + 1]
    return None
