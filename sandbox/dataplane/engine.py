"""The simulated inference engine of one model server: a bounded batch, a waiting queue, KV-cache use,
latencies, and the counters vLLM exports."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sandbox.dataplane.metrics import TTFT_BUCKETS, Exposition, Histogram
from sandbox.dataplane.podspec import ModelServerSpec


@dataclass(frozen=True)
class Latency:
    time_to_first_token: float
    per_output_token: float


# Seconds. Instant keeps tests fast; the others are near an L4 serving an 8B model.
LATENCY_BY_PROFILE = {
    "instant": Latency(0.020, 0.002),
    "demo": Latency(0.080, 0.015),
    "realistic": Latency(0.150, 0.030),
}


def latency_for_profile(profile_name: str) -> Latency:
    return LATENCY_BY_PROFILE.get(profile_name, LATENCY_BY_PROFILE["instant"])


class Sequence:
    """One request while it holds a slot in the running batch."""

    def __init__(self, engine: Engine, prompt_tokens: int) -> None:
        self._engine = engine
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self._started = time.monotonic()
        self._first_token_seen = False

    async def next_token(self) -> None:
        """Wait the time the next output token takes, then count it."""
        first = self.generated == 0
        base = self._engine.latency.time_to_first_token if first else self._engine.latency.per_output_token
        await asyncio.sleep(base * self._engine.slowdown)
        self.generated += 1
        self._engine.tokens_in_flight += 1
        if first:
            self._engine.ttft.observe(time.monotonic() - self._started)


class Engine:
    def __init__(self, spec: ModelServerSpec, latency: Latency) -> None:
        self.spec = spec
        self.latency = latency
        self.slowdown = 1.0
        self.waiting = 0
        self.running = 0
        self.tokens_in_flight = 0
        self.request_success: dict[str, int] = {}
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self._slots = asyncio.Semaphore(spec.max_num_seqs)

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.tokens_in_flight / self.spec.kv_cache_tokens)

    @contextlib.asynccontextmanager
    async def sequence(self, prompt_tokens: int) -> AsyncGenerator[Sequence, None]:
        """Queue for a slot in the batch, then hold it (and the sequence's KV cache) while generating."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        self.tokens_in_flight += prompt_tokens
        sequence = Sequence(self, prompt_tokens)
        try:
            yield sequence
        finally:
            self.tokens_in_flight -= prompt_tokens + sequence.generated
            self.running -= 1
            self._slots.release()

    def record_success(self, finish_reason: str, prompt_tokens: int, generated: int) -> None:
        self.request_success[finish_reason] = self.request_success.get(finish_reason, 0) + 1
        self.prompt_tokens_total += prompt_tokens
        self.generation_tokens_total += generated

    def exposition(self) -> str:
        labels = {"model_name": self.spec.served_models[0]}
        page = Exposition()
        page.gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            self.running,
            labels,
        )
        page.gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting, labels
        )
        page.gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            self.kv_cache_usage,
            labels,
        )
        page.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            self.kv_cache_usage,
            labels,
        )
        page.counter(
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
            self.prompt_tokens_total,
            labels,
        )
        page.counter(
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            self.generation_tokens_total,
            labels,
        )
        for reason in sorted(self.request_success) or ["stop"]:
            page.counter(
                "vllm:request_success_total",
                "Count of successfully processed requests.",
                self.request_success.get(reason, 0),
                {**labels, "finished_reason": reason},
            )
        page.histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            self.ttft,
            labels,
        )
        return page.text()
