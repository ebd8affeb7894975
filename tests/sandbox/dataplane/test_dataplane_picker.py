"""The endpoint picker's scorers and pick, and scraping vLLM metrics pages (parsing only, no servers)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sandbox.dataplane.metrics import LoraInfo, gauge_value, latest_lora_info, parse_samples
from sandbox.dataplane.picker import (
    HASH_BLOCK_SIZE,
    Endpoint,
    EndpointMetrics,
    EndpointPicker,
    PrefixCacheIndex,
    kv_cache_scores,
    queue_scores,
)

A, B, C = Endpoint("a", "127.9.0.1", 8000), Endpoint("b", "127.9.0.2", 8000), Endpoint("c", "127.9.0.3", 8000)


def test_queue_scorer_normalises_between_the_shortest_and_longest_queue():
    assert queue_scores([0, 5, 10]) == [1.0, 0.5, 0.0]
    assert queue_scores([3, 3]) == [1.0, 1.0]


def test_kv_cache_scorer_prefers_free_cache():
    assert kv_cache_scores([0.0, 0.25, 1.0, 1.5]) == [1.0, 0.75, 0.0, 0.0]


def test_prefix_index_scores_the_cached_fraction_of_full_blocks():
    index = PrefixCacheIndex()
    shared = "s" * HASH_BLOCK_SIZE * 2
    first = index.block_hashes(shared + "x" * HASH_BLOCK_SIZE)
    index.record(A.address, first)
    second = index.block_hashes(shared + "y" * HASH_BLOCK_SIZE * 2)
    assert index.score(A.address, second) == pytest.approx(2 / 4)
    assert index.score(B.address, second) == 0.0
    assert index.block_hashes("short prompt") == []


def test_prefix_index_forgets_least_recently_used_blocks():
    index = PrefixCacheIndex(capacity=2)
    old = index.block_hashes("o" * HASH_BLOCK_SIZE)
    index.record(A.address, old)
    index.record(A.address, index.block_hashes("n" * HASH_BLOCK_SIZE * 2))
    assert index.score(A.address, old) == 0.0


def picker_with(metrics: dict[Endpoint, tuple[float, float]], seed: int = 7) -> EndpointPicker:
    picker = EndpointPicker(rng=random.Random(seed))
    for endpoint, (waiting, kv) in metrics.items():
        picker.metrics[endpoint.address] = EndpointMetrics(waiting=waiting, kv_cache=kv)
    return picker


def test_pick_prefers_the_endpoint_with_the_shortest_queue_and_freest_cache():
    picker = picker_with({A: (4, 0.5), B: (0, 0.1), C: (2, 0.3)})
    assert picker.pick("pool", [A, B, C], "hi") == B


def test_pick_weighs_queue_and_cache_equally():
    # A: queue score 1, kv score 0.1 -> 1.1;  B: queue score 0, kv score 1.0 -> 1.0
    picker = picker_with({A: (0, 0.9), B: (6, 0.0)})
    assert picker.pick("pool", [A, B], "hi") == A


def test_pick_follows_the_prefix_cache_when_load_is_equal():
    picker = picker_with({A: (0, 0.0), B: (0, 0.0)})
    prompt = "system prompt " * 20
    first = picker.pick("pool", [A, B], prompt)
    assert all(picker.pick("pool", [A, B], prompt + f" question {i}") == first for i in range(5))


def test_ties_are_broken_at_random():
    picker = picker_with({A: (0, 0.0), B: (0, 0.0), C: (0, 0.0)})
    picks = Counter(picker.pick("pool", [A, B, C], f"short {i}").pod for i in range(90))
    assert set(picks) == {"a", "b", "c"}


def test_round_robin_mode_cycles_through_endpoints():
    picker = picker_with({A: (0, 0.0), B: (9, 0.9)})
    picker.mode = "round_robin"
    assert [picker.pick("pool", [B, A], "x").pod for _ in range(4)] == ["a", "b", "a", "b"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown picker mode"):
        EndpointPicker(mode="fastest")


def test_parsing_a_vllm_metrics_page():
    page = (
        "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0\n'
        'vllm:gpu_cache_usage_perc{model_name="m",engine="0"} 0.25\n'
        'vllm:request_success_total{finished_reason="stop",model_name="a \\"quoted\\" name"} 12\n'
        "garbage line\n"
    )
    assert gauge_value(page, "vllm:num_requests_waiting") == 3.0
    assert gauge_value(page, "vllm:gpu_cache_usage_perc") == 0.25
    assert gauge_value(page, "vllm:kv_cache_usage_perc") is None
    success = [s for s in parse_samples(page) if s.name == "vllm:request_success_total"]
    assert success[0].labels == {"finished_reason": "stop", "model_name": 'a "quoted" name'}


def test_reading_lora_requests_info_as_the_epp_does():
    """The newest series that names an adapter wins; series with neither label set are skipped."""
    page = (
        "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
        "# TYPE vllm:lora_requests_info gauge\n"
        'vllm:lora_requests_info{max_lora="2",waiting_lora_adapters="b",running_lora_adapters="a"} 1700000001.5\n'
        'vllm:lora_requests_info{max_lora="2",waiting_lora_adapters="",running_lora_adapters="a,c"} 1700000002.0\n'
        'vllm:lora_requests_info{max_lora="2",waiting_lora_adapters="",running_lora_adapters=""} 1700000009.0\n'
    )
    assert latest_lora_info(page) == LoraInfo(running=("a", "c"), waiting=(), max_loras=2)
    empty_only = page.splitlines()[:2] + [page.splitlines()[-1]]
    assert latest_lora_info("\n".join(empty_only)) is None
    assert latest_lora_info("") is None
