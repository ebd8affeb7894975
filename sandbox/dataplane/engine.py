"""The simulated inference engine of one model server: a bounded batch, a waiting queue, KV-cache use,
latencies, and the counters vLLM exports."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sandbox.dataplane.metrics import LORA_INFO_METRIC, TTFT_BUCKETS, Exposition, Histogram
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


class LoraRequestsInfo:
    """vllm:lora_requests_info as vLLM 0.8.5's V1 engine keeps it (vllm/v1/metrics/loggers.py,
    PrometheusStatLogger.record; vllm/v1/metrics/stats.py, LoRARequestStates): a gauge with the labels
    max_lora, waiting_lora_adapters and running_lora_adapters (adapter names joined by commas, in the
    order the engine first saw them), set to the current time at every engine step. Every combination
    of labels is its own series and keeps its last time, which is how the EPP finds the newest
    (pkg/epp/backend/metrics/metrics.go, getLatestLoraMetric). No series exists before the first step."""

    def __init__(self, max_loras: int) -> None:
        self.max_loras = max_loras
        self._waiting: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._seen: dict[str, None] = {}
        self.series: dict[tuple[str, str], float] = {}  # (waiting, running) -> time of the last step

    def queued(self, adapter: str) -> None:
        self._seen.setdefault(adapter, None)
        self._waiting[adapter] = self._waiting.get(adapter, 0) + 1

    def scheduled(self, adapter: str) -> None:
        self._waiting[adapter] -= 1
        self._running[adapter] = self._running.get(adapter, 0) + 1

    def left(self, adapter: str, was_running: bool) -> None:
        counts = self._running if was_running else self._waiting
        counts[adapter] -= 1

    def step(self) -> None:
        waiting = ",".join(name for name in self._seen if self._waiting.get(name))
        running = ",".join(name for name in self._seen if self._running.get(name))
        self.series[(waiting, running)] = time.time()

    def write(self, page: Exposition) -> None:
        page.declare(LORA_INFO_METRIC, "gauge", "Running stats on lora requests.")
        for (waiting, running), stamp in self.series.items():
            labels = {
                "max_lora": str(self.max_loras),
                "waiting_lora_adapters": waiting,
                "running_lora_adapters": running,
            }
            page.gauge(LORA_INFO_METRIC, "Running stats on lora requests.", stamp, labels)


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
        if self._engine.lora_info is not None:
            self._engine.lora_info.step()


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
        self.lora_info = LoraRequestsInfo(spec.max_loras) if spec.max_loras is not None else None
        self._slots = asyncio.Semaphore(spec.max_num_seqs)

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.tokens_in_flight / self.spec.kv_cache_tokens)

    @contextlib.asynccontextmanager
    async def sequence(
        self, prompt_tokens: int, adapter: str | None = None
    ) -> AsyncGenerator[Sequence, None]:
        """Queue for a slot in the batch, then hold it (and the sequence's KV cache) while generating.
        adapter names the LoRA adapter the request asked for, if any."""
        lora = self.lora_info if adapter is not None else None
        if lora is not None:
            lora.queued(adapter)
        self.waiting += 1
        try:
            await self._slots.acquire()
        except BaseException:
            if lora is not None:
                lora.left(adapter, was_running=False)
            raise
        finally:
            self.waiting -= 1
        if lora is not None:
            lora.scheduled(adapter)
        self.running += 1
        self.tokens_in_flight += prompt_tokens
        sequence = Sequence(self, prompt_tokens)
        try:
            yield sequence
        finally:
            self.tokens_in_flight -= prompt_tokens + sequence.generated
            self.running -= 1
            self._slots.release()
            if lora is not None:
                lora.left(adapter, was_running=True)
            if self.lora_info is not None:
                self.lora_info.step()  # the step that finishes a request reports the batch without it

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
        if self.lora_info is not None:
            self.lora_info.write(page)
        return page.text()
