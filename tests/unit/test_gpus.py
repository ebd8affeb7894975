"""The DAG's GPU arithmetic: the issue's numbers for Llama 3.1 8B, and GKE Autopilot's GPU table."""

from __future__ import annotations

import pytest

from gke_inference.gpus import (
    AUTOPILOT_GPU_CAPS,
    GIB,
    GPU_MEMORY_GB,
    MODELS,
    allowed_gpu_counts,
    kv_cache_fit,
)
from gke_inference.params import build_params

LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]


def test_llama_8b_weights_and_kv_cache_per_token():
    fit = kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, 131072)
    assert round(fit.weight_bytes / GIB, 1) == 15.0
    assert fit.per_token_bytes == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert fit.needed_bytes == 16 * GIB


def test_the_full_context_does_not_fit_one_l4_and_the_message_names_the_numbers():
    fit = kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, 131072)
    assert not fit.fits
    assert 3 * GIB < fit.kv_cache_bytes < 4 * GIB  # ~20 GiB at 0.9, minus weights and the profiling reserve
    assert 24_000 < fit.max_tokens < 32_000
    assert fit.describe() == (
        "max_model_len 131072 needs 16.0 GiB of KV cache; nvidia-l4 x1 at 0.9 leaves 3.7 GiB after "
        f"15.0 GiB of weights; at most {fit.max_tokens} tokens fit"
    )


def test_8192_fits_one_l4_with_headroom():
    fit = kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, 8192)
    assert fit.fits
    assert fit.max_tokens >= 3 * 8192


def test_the_fit_boundary_is_the_last_whole_block():
    capacity = kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, 8192).max_tokens
    assert capacity % 16 == 0
    assert kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, capacity).fits
    assert not kv_cache_fit(LLAMA_8B, "nvidia-l4", 1, capacity + 1).fits


@pytest.mark.parametrize(
    "gpu_type, count", [("nvidia-l4", 2), ("nvidia-tesla-a100", 1), ("nvidia-h100-80gb", 1)]
)
def test_more_or_bigger_gpus_hold_the_full_context(gpu_type, count):
    assert kv_cache_fit(LLAMA_8B, gpu_type, count, 131072).fits


def test_tensor_parallel_shards_weights_and_kv_heads():
    one, two = (kv_cache_fit(LLAMA_8B, "nvidia-l4", n, 8192) for n in (1, 2))
    assert two.weight_bytes == one.weight_bytes // 2
    assert two.per_token_bytes == one.per_token_bytes // 2


def test_weights_that_do_not_fit_leave_no_kv_cache():
    fit = kv_cache_fit(MODELS["meta-llama/Llama-3.1-70B-Instruct"], "nvidia-l4", 1, 256)
    assert not fit.fits and fit.max_tokens == 0


def test_every_gpu_type_the_params_allow_has_memory_and_autopilot_counts():
    gpu_types = build_params()["gpu_type"].schema["enum"]
    assert set(gpu_types) == set(GPU_MEMORY_GB) == set(AUTOPILOT_GPU_CAPS)
    assert GPU_MEMORY_GB["nvidia-l4"] == 24 and GPU_MEMORY_GB["nvidia-tesla-a100"] == 40


def test_autopilot_gpu_counts():
    assert allowed_gpu_counts("nvidia-l4") == [1, 2, 4, 8]
    assert allowed_gpu_counts("nvidia-h200-141gb") == [8]
    assert 3 not in allowed_gpu_counts("nvidia-h100-80gb")
    assert allowed_gpu_counts("nvidia-tesla-t4") == []


def test_autopilot_caps_grow_with_the_machine_behind_each_count():
    # One A100 40GB: the '11' CPU / '74Gi' caps of a published Warden refusal.
    caps = AUTOPILOT_GPU_CAPS["nvidia-tesla-a100"][1]
    assert (caps.cpu, caps.memory_gib) == (11, 74)
    for by_count in AUTOPILOT_GPU_CAPS.values():
        counts = sorted(by_count)
        largest = by_count[counts[-1]]
        assert all(by_count[c].memory_gib <= largest.memory_gib for c in counts)
