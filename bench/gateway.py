"""The twin's gateway: latency through it against straight to the model server, and the Endpoint
Picker's p90 against round-robin's with one replica slowed down.

Both use the data-plane harness (sandbox/dataplane/harness.py: real model servers, gateway
listener and picker on loopback, no cluster). Latency: one replica, so the gateway and the direct
path reach the same server; the two paths alternate in rounds so drift in machine load touches both.
Picker: sandbox/dataplane/loadtest.py's `benchmark` (three replicas, the first slowed down).
"""

from __future__ import annotations

import asyncio

from sandbox.dataplane.harness import DataPlaneHarness
from sandbox.dataplane.loadtest import LoadResult, benchmark, run_load

MODEL_SERVER_PORT = 8000


async def _latency(requests: int, concurrency: int, rounds: int) -> dict:
    direct, through_gateway = LoadResult(0, 0.0), LoadResult(0, 0.0)
    async with DataPlaneHarness("instant") as lab:
        gateway_url = await lab.tutorial_setup(replicas=1)
        (pod,) = [name for _, name in lab.dataplane.model_servers]
        direct_url = f"http://{lab.pod_ip(pod)}:{MODEL_SERVER_PORT}"
        await run_load(gateway_url, requests=concurrency, concurrency=concurrency)  # warm both paths
        await run_load(direct_url, requests=concurrency, concurrency=concurrency)
        for _ in range(rounds):
            for url, total in ((direct_url, direct), (gateway_url, through_gateway)):
                result = await run_load(url, requests=requests, concurrency=concurrency)
                _merge(total, result)
    return {
        "concurrency": concurrency,
        "requests_per_path": direct.requests,
        "direct": _summary(direct),
        "gateway": _summary(through_gateway),
        "p50_overhead_ms": 1000 * (through_gateway.percentile(0.5) - direct.percentile(0.5)),
        "p99_overhead_ms": 1000 * (through_gateway.percentile(0.99) - direct.percentile(0.99)),
        "p50_ratio": through_gateway.percentile(0.5) / direct.percentile(0.5),
        "rps_ratio": _rps(through_gateway) / _rps(direct),
    }


async def _pickers(requests: int, concurrency: int, replicas: int, slowdown: float) -> dict:
    comparison = await benchmark(
        replicas=replicas, slowdown=slowdown, requests=requests, concurrency=concurrency
    )
    epp, round_robin = comparison.epp, comparison.round_robin
    return {
        "replicas": replicas,
        "slowdown": slowdown,
        "requests_per_picker": requests,
        "concurrency": concurrency,
        "round_robin": {**_summary(round_robin), "slow_pod_share": round_robin.share(comparison.slow_pod)},
        "epp": {**_summary(epp), "slow_pod_share": epp.share(comparison.slow_pod)},
        "p90_ratio": epp.percentile(0.9) / round_robin.percentile(0.9),
    }


def measure_latency(requests: int = 200, concurrency: int = 4, rounds: int = 2) -> dict:
    return asyncio.run(_latency(requests, concurrency, rounds))


def measure_pickers(
    requests: int = 200, concurrency: int = 8, replicas: int = 3, slowdown: float = 5.0
) -> dict:
    return asyncio.run(_pickers(requests, concurrency, replicas, slowdown))


def _merge(total: LoadResult, part: LoadResult) -> None:
    total.requests += part.requests
    total.elapsed += part.elapsed
    total.statuses.update(part.statuses)
    total.by_pod.update(part.by_pod)
    total.latencies.extend(part.latencies)


def _rps(result: LoadResult) -> float:
    return len(result.latencies) / result.elapsed


def _summary(result: LoadResult) -> dict:
    if result.statuses.keys() != {200}:
        raise RuntimeError(f"load test saw non-200 answers: {dict(result.statuses)}")
    return {
        "p50_ms": 1000 * result.percentile(0.5),
        "p90_ms": 1000 * result.percentile(0.9),
        "p99_ms": 1000 * result.percentile(0.99),
        "requests_per_s": _rps(result),
    }
