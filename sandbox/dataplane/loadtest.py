"""A bounded closed-loop load test against a gateway, and the EPP-versus-round-robin comparison that
`make bench` (`python -m sandbox.dataplane.loadtest`) and the tests run: how much traffic a slowed replica still receives under each picker."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from sandbox.dataplane.harness import GATEWAY, DataPlaneHarness
from sandbox.dataplane.picker import EPP, ROUND_ROBIN

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass
class LoadResult:
    requests: int
    elapsed: float
    by_pod: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def share(self, pod: str) -> float:
        served = sum(self.by_pod.values())
        return self.by_pod[pod] / served if served else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def run_load(
    base_url: str,
    requests: int = 200,
    concurrency: int = 8,
    model: str = DEFAULT_MODEL,
    max_tokens: int = 16,
    timeout: float = 60.0,
) -> LoadResult:
    """Send `requests` chat completions with `concurrency` workers; count which pod served each."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be positive")
    result = LoadResult(requests=requests, elapsed=0.0)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = {
                    "model": model,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": f"Load test request {index}: say something."}],
                }
                started = time.monotonic()
                async with session.post(url, json=body) as response:
                    await response.read()
                    result.statuses[response.status] += 1
                    if response.status == 200:
                        result.by_pod[response.headers.get("x-inference-pod", "?")] += 1
                        result.latencies.append(time.monotonic() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.monotonic() - started
    return result


@dataclass(frozen=True)
class PickerComparison:
    slow_pod: str
    round_robin: LoadResult
    epp: LoadResult

    @property
    def slow_share_ratio(self) -> float:
        """The slow replica's share of traffic under the EPP, relative to its share under round-robin."""
        baseline = self.round_robin.share(self.slow_pod)
        return self.epp.share(self.slow_pod) / baseline if baseline else float("inf")


async def compare_pickers(
    dataplane,
    gateway_name: str,
    base_url: str,
    slow_pod: str,
    slowdown: float = 5.0,
    requests: int = 200,
    concurrency: int = 8,
) -> PickerComparison:
    """Slow one replica down, then load the gateway once per picker mode (the EPP last)."""
    dataplane.set_pod_slowdown(slow_pod, slowdown)
    try:
        dataplane.set_picker(gateway_name, ROUND_ROBIN)
        round_robin = await run_load(base_url, requests, concurrency)
        dataplane.set_picker(gateway_name, EPP)
        epp = await run_load(base_url, requests, concurrency)
    finally:
        dataplane.set_pod_slowdown(slow_pod, 1.0)
        dataplane.set_picker(gateway_name, EPP)
    return PickerComparison(slow_pod=slow_pod, round_robin=round_robin, epp=epp)


async def benchmark(
    replicas: int = 3,
    slowdown: float = 5.0,
    requests: int = 200,
    concurrency: int = 8,
    max_num_seqs: int = 4,
    profile: str = "instant",
) -> PickerComparison:
    """The comparison on the data-plane harness (no cluster needed): `replicas` vLLM pods behind the
    tutorial's pool and gateway, the first of them slowed down."""
    if replicas < 2:
        raise ValueError("the comparison needs at least two replicas")
    async with DataPlaneHarness(profile) as lab:
        args = lab.vllm_args(("--max-num-seqs", str(max_num_seqs)))
        base_url = await lab.tutorial_setup(replicas=replicas, args=args)
        slow_pod = sorted(name for _, name in lab.dataplane.model_servers)[0]
        return await compare_pickers(
            lab.dataplane, GATEWAY, base_url, slow_pod, slowdown, requests, concurrency
        )


def report(comparison: PickerComparison) -> str:
    lines = [f"{'picker':<12} {'slow pod share':>14} {'p50 s':>8} {'p90 s':>8} {'wall s':>8}"]
    for name, result in (("round_robin", comparison.round_robin), ("epp", comparison.epp)):
        lines.append(
            f"{name:<12} {result.share(comparison.slow_pod):>14.1%} {result.percentile(0.5):>8.3f} "
            f"{result.percentile(0.9):>8.3f} {result.elapsed:>8.2f}"
        )
    lines.append(
        f"EPP sends the slow replica {comparison.slow_share_ratio:.2f}x the traffic round-robin does"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="EPP versus round-robin with one slowed vLLM replica")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--slowdown", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--profile", default="instant", choices=["instant", "demo", "realistic"])
    options = parser.parse_args(argv)
    comparison = asyncio.run(
        benchmark(
            options.replicas,
            options.slowdown,
            options.requests,
            options.concurrency,
            options.max_num_seqs,
            options.profile,
        )
    )
    print(report(comparison))


if __name__ == "__main__":
    main()
