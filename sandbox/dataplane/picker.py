"""The endpoint picker (EPP v1.0.1 default profile): queue, KV-cache and prefix-cache scorers with weight 1
each, a max-score pick with random tie-break, and metrics scraped from each model server every 50 ms."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from sandbox.dataplane.metrics import LoraInfo, gauge_value, latest_lora_info

log = logging.getLogger(__name__)

SCRAPE_INTERVAL = 0.05  # --refresh-metrics-interval
SCRAPE_TIMEOUT = 1.0
# Scraping pauses once a pool has had no traffic for this long, so idle gateways do not flood the
# model servers (and the sandbox's request log) with 20 scrapes a second.
SCRAPE_IDLE_AFTER = 2.0
QUEUE_METRIC = "vllm:num_requests_waiting"  # --total-queued-requests-metric
KV_CACHE_METRIC = "vllm:gpu_cache_usage_perc"  # --kv-cache-usage-percentage-metric (v1.0.1 default)
HASH_BLOCK_SIZE = 64  # characters per prefix block
MAX_PREFIX_BLOCKS = 256
LRU_CAPACITY_PER_SERVER = 31250

EPP = "epp"
ROUND_ROBIN = "round_robin"
PICKER_MODES = (EPP, ROUND_ROBIN)


@dataclass(frozen=True)
class Endpoint:
    pod: str
    ip: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class EndpointMetrics:
    waiting: float = 0.0
    kv_cache: float = 0.0
    scraped_at: float = 0.0
    # What the EPP reads for its LoRA affinity scorer (not in the v1.0.1 default profile, so unscored).
    lora: LoraInfo | None = None


class PrefixCacheIndex:
    """Which prompt-prefix blocks each server has probably cached (the EPP's approximation)."""

    def __init__(self, capacity: int = LRU_CAPACITY_PER_SERVER) -> None:
        self._capacity = capacity
        self._blocks: dict[str, OrderedDict[bytes, None]] = {}

    @staticmethod
    def block_hashes(prompt: str) -> list[bytes]:
        hashes: list[bytes] = []
        previous = b""
        for start in range(0, min(len(prompt), HASH_BLOCK_SIZE * MAX_PREFIX_BLOCKS), HASH_BLOCK_SIZE):
            block = prompt[start : start + HASH_BLOCK_SIZE]
            if len(block) < HASH_BLOCK_SIZE:
                break  # only full blocks are hashed
            previous = hashlib.sha256(previous + block.encode()).digest()[:16]
            hashes.append(previous)
        return hashes

    def score(self, address: str, hashes: Sequence[bytes]) -> float:
        if not hashes:
            return 0.0
        cached = self._blocks.get(address, {})
        matched = 0
        for block in hashes:
            if block not in cached:
                break
            matched += 1
        return matched / len(hashes)

    def record(self, address: str, hashes: Sequence[bytes]) -> None:
        cached = self._blocks.setdefault(address, OrderedDict())
        for block in hashes:
            cached[block] = None
            cached.move_to_end(block)
        while len(cached) > self._capacity:
            cached.popitem(last=False)


def queue_scores(waiting: Sequence[float]) -> list[float]:
    low, high = min(waiting), max(waiting)
    if high == low:
        return [1.0] * len(waiting)
    return [(high - value) / (high - low) for value in waiting]


def kv_cache_scores(usage: Sequence[float]) -> list[float]:
    return [1.0 - min(max(value, 0.0), 1.0) for value in usage]


class EndpointPicker:
    """Picks endpoints for one gateway, by EPP scoring or by round-robin (the benchmark's baseline)."""

    def __init__(self, mode: str = EPP, rng: random.Random | None = None) -> None:
        self.mode = mode
        self.metrics: dict[str, EndpointMetrics] = {}
        self.prefix_index = PrefixCacheIndex()
        self._rng = rng or random.Random()
        self._round_robin: dict[str, int] = {}

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in PICKER_MODES:
            raise ValueError(f"unknown picker mode {value!r}; choose one of {PICKER_MODES}")
        self._mode = value

    def round_robin(self, key: str, candidates: Sequence[Endpoint]) -> Endpoint:
        ordered = sorted(candidates, key=lambda endpoint: endpoint.address)
        turn = self._round_robin.get(key, 0)
        self._round_robin[key] = turn + 1
        return ordered[turn % len(ordered)]

    def pick(self, key: str, candidates: Sequence[Endpoint], prompt: str) -> Endpoint:
        if not candidates:
            raise ValueError("no candidate endpoints")
        if self.mode == ROUND_ROBIN:
            return self.round_robin(key, candidates)
        known = [self.metrics.get(endpoint.address, EndpointMetrics()) for endpoint in candidates]
        hashes = self.prefix_index.block_hashes(prompt)
        totals = [
            queue + kv + self.prefix_index.score(endpoint.address, hashes)
            for endpoint, queue, kv in zip(
                candidates,
                queue_scores([m.waiting for m in known]),
                kv_cache_scores([m.kv_cache for m in known]),
                strict=True,
            )
        ]
        best = max(totals)
        chosen = self._rng.choice([e for e, total in zip(candidates, totals, strict=True) if total == best])
        self.prefix_index.record(chosen.address, hashes)
        return chosen


class MetricsScraper:
    """Refreshes an EndpointPicker's metrics from the endpoints of one pool, every SCRAPE_INTERVAL."""

    def __init__(
        self,
        picker: EndpointPicker,
        session: aiohttp.ClientSession,
        endpoints: Callable[[], Awaitable[Sequence[Endpoint]]],
    ) -> None:
        self._picker = picker
        self._session = session
        self._endpoints = endpoints
        self._task: asyncio.Task | None = None
        self._wanted = asyncio.Event()
        self._last_demand = 0.0

    async def demand(self) -> None:
        """Note that the pool is serving traffic. After a pause, scrape before the pick so that it does
        not use metrics from the last busy moment."""
        paused = not self._wanted.is_set()
        self._last_demand = time.monotonic()
        self._wanted.set()
        if paused:
            await self.scrape_once()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def scrape_once(self) -> None:
        endpoints = await self._endpoints()
        await asyncio.gather(*(self._scrape(endpoint) for endpoint in endpoints))

    async def _run(self) -> None:
        while True:
            if time.monotonic() - self._last_demand > SCRAPE_IDLE_AFTER:
                self._wanted.clear()
                await self._wanted.wait()
            try:
                await self.scrape_once()
            except Exception:  # a scrape round must never end the loop; log and go on
                log.exception("metrics scrape round failed")
            await asyncio.sleep(SCRAPE_INTERVAL)

    async def _scrape(self, endpoint: Endpoint) -> None:
        url = f"http://{endpoint.address}/metrics"
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
            ) as response:
                if response.status != 200:
                    return
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return  # stale metrics stay in place, as in the EPP
        metrics = self._picker.metrics.setdefault(endpoint.address, EndpointMetrics())
        metrics.waiting = gauge_value(text, QUEUE_METRIC) or 0.0
        metrics.kv_cache = gauge_value(text, KV_CACHE_METRIC) or 0.0
        metrics.lora = latest_lora_info(text) or metrics.lora
        metrics.scraped_at = time.monotonic()
