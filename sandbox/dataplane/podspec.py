"""Read a pod's vLLM container: which models it serves, on which port, with which engine limits."""

from __future__ import annotations

import json
from dataclasses import dataclass

VLLM_DEFAULT_PORT = 8000
VLLM_DEFAULT_MAX_NUM_SEQS = 256
VLLM_DEFAULT_BLOCK_SIZE = 16
# About 32k tokens of KV cache: what an 8B model in bf16 leaves free on a 24 GB L4.
DEFAULT_GPU_BLOCKS = 2048
# Llama 3.1's context window, which vLLM uses when --max-model-len is not given.
DEFAULT_MAX_MODEL_LEN = 131072


@dataclass(frozen=True)
class ModelServerSpec:
    served_models: tuple[str, ...]  # the first is the base model; LoRA adapters follow
    port: int
    max_num_seqs: int
    kv_cache_tokens: int
    max_model_len: int


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
        block_size = _int_flag(flags, ("block-size",), VLLM_DEFAULT_BLOCK_SIZE)
        blocks = _int_flag(flags, ("num-gpu-blocks-override",), DEFAULT_GPU_BLOCKS)
        return ModelServerSpec(
            served_models=tuple(served) + tuple(_lora_names(flags.get("lora-modules", []))),
            port=_port(container, flags),
            max_num_seqs=max(1, _int_flag(flags, ("max-num-seqs", "max-num-seq"), VLLM_DEFAULT_MAX_NUM_SEQS)),
            kv_cache_tokens=max(1, block_size * blocks),
            max_model_len=_int_flag(flags, ("max-model-len",), DEFAULT_MAX_MODEL_LEN),
        )
    return None


def _positional_model(argv: list[str]) -> str | None:
    """`vllm serve MODEL ...` names the model positionally."""
    for index, token in enumerate(argv[:-1]):
        if token == "serve" and not argv[index + 1].startswith("-"):
            return argv[index + 1]
    return None
