"""The twin's gateway: latency through it against straight to the model server, and the Endpoint
Picker's latency percentiles against round-robin's with one replica slowed down.

Both run on the data-plane harness (sandbox/dataplane/harness.py: real model servers, gateway
listener and picker on loopback, no cluster). Each warms up first (not counted), then measures in
alternating passes, so drift in the machine's load touches both sides alike. Every figure is the
median over the passes of a per-pass comparison, with its min and max and the per-pass values.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

from sandbox.dataplane.harness import GATEWAY, DataPlaneHarness
from sandbox.dataplane.loadtest import LoadResult, run_load
from sandbox.dataplane.picker import EPP, ROUND_ROBIN

MODEL_SERVER_PORT = 8000
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
PATHS = ("direct", "gateway")
PICKERS = (EPP, ROUND_ROBIN)  # measured in this order, pass after pass
LATENCY_P50_LABEL = "7a. gateway p50 - direct p50 (same model server)"
PICKER_LABELS = {
    "p90": "7b. EPP p90 / round-robin p90, one replica slowed 5x",
    "p99": "7c. EPP p99 / round-robin p99, one replica slowed 5x",
}
PICKER_TARGETS = {"p90": 0.7, "p99": None}


@dataclass(frozen=True)
class LatencySettings:
    requests: int = 200  # per path and round
    rounds: int = 5
    concurrency: int = 4
    warmup: int = 40  # per path, before the first round

    def __post_init__(self) -> None:
        _check_repeats(self.rounds, self.requests, self.warmup)


@dataclass(frozen=True)
class PickerSettings:
    requests: int = 200  # per picker and pass
    passes: int = 5
    concurrency: int = 8
    warmup: int = 48  # per picker, before the first pass
    replicas: int = 3
    slowdown: float = 5.0
    max_num_seqs: int = 4  # 3 x 4 batch slots for 8 clients: queues form on the slow replica

    def __post_init__(self) -> None:
        _check_repeats(self.passes, self.requests, self.warmup)
        if self.replicas < 2:
            raise ValueError("the comparison needs at least two replicas")


def _check_repeats(repeats: int, requests: int, warmup: int) -> None:
    if repeats < 3 or requests < 1 or warmup < 1:
        raise ValueError(
            f"need >= 3 repeats, >= 1 request and >= 1 warm-up request, got {repeats}, {requests}, {warmup}"
        )


QUICK_LATENCY = LatencySettings(requests=40, rounds=3, warmup=8)
QUICK_PICKERS = PickerSettings(requests=48, passes=3, warmup=16)


def measure_latency(quick: bool = False, settings: LatencySettings | None = None) -> dict:
    return asyncio.run(_latency(settings or (QUICK_LATENCY if quick else LatencySettings())))


def measure_pickers(quick: bool = False, settings: PickerSettings | None = None) -> dict:
    return asyncio.run(_pickers(settings or (QUICK_PICKERS if quick else PickerSettings())))


# -- gateway against direct ------------------------------------------------------------------------


async def _latency(settings: LatencySettings) -> dict:
    """One replica, so both paths reach the same model server; the path that goes first alternates."""
    async with DataPlaneHarness("instant") as lab:
        gateway_url = await lab.tutorial_setup(replicas=1)
        (pod,) = [name for _, name in lab.dataplane.model_servers]
        urls = {"direct": f"http://{lab.pod_ip(pod)}:{MODEL_SERVER_PORT}", "gateway": gateway_url}
        for path in PATHS:
            await run_load(urls[path], requests=settings.warmup, concurrency=settings.concurrency)
        passes = []
        for index in range(settings.rounds):
            for path in PATHS if index % 2 == 0 else PATHS[::-1]:
                result = await run_load(urls[path], settings.requests, settings.concurrency)
                passes.append({"round": index, "path": path, **_summary(result)})
        served = _served(lab)
    return latency_result(settings, passes, served)


def latency_result(settings: LatencySettings, passes: list[dict], served: int) -> dict:
    """The figures from the measured rounds: each round's gateway minus direct, median over rounds."""
    by_path = {path: [p for p in passes if p["path"] == path] for path in PATHS}
    overhead = {
        name: _spread([g[f"{name}_ms"] - d[f"{name}_ms"] for d, g in zip(*by_path.values(), strict=True)])
        for name in PERCENTILES
    }
    rps_ratio = _spread(
        [g["requests_per_s"] / d["requests_per_s"] for d, g in zip(*by_path.values(), strict=True)]
    )
    return {
        "concurrency": settings.concurrency,
        "rounds": settings.rounds,
        "requests_per_round": settings.requests,
        "requests_per_path": settings.rounds * settings.requests,
        "warmup_requests_per_path": settings.warmup,
        "served_by_model_server": served,
        "order": [p["path"] for p in passes],
        "passes": passes,
        **{path: _medians(rows) for path, rows in by_path.items()},
        "overhead_ms": overhead,
        "p50_overhead_ms": overhead["p50"]["median"],
        "p99_overhead_ms": overhead["p99"]["median"],
        "rps_ratio": rps_ratio["median"],
        "figures": [_figure(LATENCY_P50_LABEL, overhead["p50"], "ms", 3.0)],
    }


# -- EPP against round-robin -----------------------------------------------------------------------


async def _pickers(settings: PickerSettings) -> dict:
    """`replicas` vLLM pods behind the tutorial's pool and gateway, the first slowed down throughout."""
    async with DataPlaneHarness("instant") as lab:
        args = lab.vllm_args(("--max-num-seqs", str(settings.max_num_seqs)))
        base_url = await lab.tutorial_setup(replicas=settings.replicas, args=args)
        slow_pod = sorted(name for _, name in lab.dataplane.model_servers)[0]
        lab.dataplane.set_pod_slowdown(slow_pod, settings.slowdown)
        for picker in PICKERS:
            lab.dataplane.set_picker(GATEWAY, picker)
            await run_load(base_url, settings.warmup, settings.concurrency)
        passes = []
        for index in range(settings.passes):
            for picker in PICKERS:
                lab.dataplane.set_picker(GATEWAY, picker)
                result = await run_load(base_url, settings.requests, settings.concurrency)
                share = result.share(slow_pod)
                passes.append({"pass": index, "picker": picker, **_summary(result), "slow_pod_share": share})
        served = _served(lab)
    return picker_result(settings, slow_pod, passes, served)


def picker_result(settings: PickerSettings, slow_pod: str, passes: list[dict], served: int) -> dict:
    """The figures from the measured passes: each EPP pass over the round-robin pass beside it."""
    by_picker = {picker: [p for p in passes if p["picker"] == picker] for picker in PICKERS}
    ratios = {
        name: _spread([e[f"{name}_ms"] / r[f"{name}_ms"] for e, r in zip(*by_picker.values(), strict=True)])
        for name in PERCENTILES
    }
    return {
        "replicas": settings.replicas,
        "slowdown": settings.slowdown,
        "max_num_seqs": settings.max_num_seqs,
        "concurrency": settings.concurrency,
        "passes_per_picker": settings.passes,
        "requests_per_pass": settings.requests,
        "requests_per_picker": settings.passes * settings.requests,
        "warmup_requests_per_picker": settings.warmup,
        "served_by_model_servers": served,
        "slow_pod": slow_pod,
        "order": [p["picker"] for p in passes],
        "passes": passes,
        **{picker: _medians(rows) for picker, rows in by_picker.items()},
        "ratios": ratios,
        "p90_ratio": ratios["p90"]["median"],
        "epp_beats_round_robin": {name: _wins(spread["passes"]) for name, spread in ratios.items()},
        "figures": [
            _figure(label, ratios[name], "x", PICKER_TARGETS[name]) for name, label in PICKER_LABELS.items()
        ],
    }


def _wins(ratios: list[float]) -> str:
    """In how many passes the EPP's percentile was below round-robin's."""
    wins = sum(ratio < 1 for ratio in ratios)
    if wins == len(ratios):
        return "every pass"
    return "no pass" if wins == 0 else f"{wins} of {len(ratios)} passes"


# -- numbers ---------------------------------------------------------------------------------------


def _served(lab: DataPlaneHarness) -> int:
    """Requests the model servers answered, by their own counters (warm-up included)."""
    return sum(sum(s.engine.request_success.values()) for s in lab.dataplane.model_servers.values())


def _summary(result: LoadResult) -> dict:
    if result.statuses.keys() != {200}:
        raise RuntimeError(f"load test saw non-200 answers: {dict(result.statuses)}")
    return {
        "requests": len(result.latencies),
        **{f"{name}_ms": 1000 * result.percentile(q) for name, q in PERCENTILES.items()},
        "requests_per_s": len(result.latencies) / result.elapsed,
    }


def _medians(rows: list[dict]) -> dict:
    keys = [f"{name}_ms" for name in PERCENTILES] + ["requests_per_s"]
    keys += ["slow_pod_share"] if "slow_pod_share" in rows[0] else []
    return {key: statistics.median(row[key] for row in rows) for key in keys}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "passes": values}


def _figure(label: str, spread: dict, unit: str, target: float | None, at_most: bool = True) -> dict:
    return {"label": label, **spread, "unit": unit, "target": target, "at_most": at_most}


# -- BENCHMARKS.md ---------------------------------------------------------------------------------


def markdown_section(latency: dict, pickers: dict) -> str:
    return "\n".join([*_latency_lines(latency), "", *_picker_lines(pickers)]).rstrip() + "\n"


def _latency_lines(latency: dict) -> list[str]:
    if "error" in latency or not latency:
        return [f"Gateway latency not measured: {latency.get('error', 'not run')}."]
    lines = [
        "On the data-plane harness (`sandbox/dataplane/harness.py`: the twin's model servers, gateway "
        "listener and Endpoint Picker on loopback, `instant` model latency). Latency: one replica, "
        f"{latency['warmup_requests_per_path']} warm-up requests per path (not counted), then "
        f"{latency['rounds']} rounds of {latency['requests_per_round']} chat completions per path at "
        f"concurrency {latency['concurrency']}, the path that goes first alternating. Each cell is the "
        "median over the rounds [min, max].",
        "",
        "| path | p50 | p90 | p99 | requests/s |",
        "|---|---|---|---|---|",
    ]
    for path in PATHS:
        rows = [p for p in latency["passes"] if p["path"] == path]
        lines.append(f"| {path} | {_cells(rows)} | {latency[path]['requests_per_s']:.0f} |")
    overhead = latency["overhead_ms"]
    lines.append(
        "| gateway - direct | "
        + " | ".join(_ms_cell(overhead[name]) for name in PERCENTILES)
        + f" | {100 * latency['rps_ratio']:.0f}% of direct |"
    )
    lines += [
        "",
        "The gateway is an aiohttp proxy in the same Python process as the model server and the load "
        "generator, so on a busy machine its overhead includes waiting for the CPU.",
    ]
    return lines


def _picker_lines(pickers: dict) -> list[str]:
    if "error" in pickers or not pickers:
        return [f"Picker comparison not measured: {pickers.get('error', 'not run')}."]
    lines = [
        f"Pickers: {pickers['replicas']} replicas ({pickers['max_num_seqs']} batch slots each), the "
        f"first slowed {pickers['slowdown']:g}x; {pickers['warmup_requests_per_picker']} warm-up "
        f"requests per picker (not counted), then {pickers['passes_per_picker']} passes of "
        f"{pickers['requests_per_pass']} requests per picker at concurrency {pickers['concurrency']}, "
        "EPP and round-robin alternating. Each cell is the median over the passes [min, max]; the ratio "
        "row is the median of each pass's EPP / the round-robin pass beside it.",
        "",
        "| picker | slow replica's share | p50 | p90 | p99 |",
        "|---|---|---|---|---|",
    ]
    for picker in PICKERS:
        rows = [p for p in pickers["passes"] if p["picker"] == picker]
        lines.append(f"| {picker} | {100 * pickers[picker]['slow_pod_share']:.0f}% | {_cells(rows)} |")
    ratios = pickers["ratios"]
    lines.append(
        "| EPP / round-robin | | " + " | ".join(_ratio_cell(ratios[name]) for name in PERCENTILES) + " |"
    )
    return [*lines, "", where_epp_loses(pickers)]


def where_epp_loses(pickers: dict) -> str:
    """Plain sentences: at which percentiles the EPP beat round-robin in every pass, some, or none,
    and why it loses where it does (measured on the twin: see the gateway bench's report)."""
    wins = pickers["epp_beats_round_robin"]
    beats = ", ".join(f"{name} in {verdict}" for name, verdict in wins.items())
    losing = [name for name, verdict in wins.items() if verdict != "every pass"]
    if not losing:
        return f"The EPP beat round-robin at every percentile in every pass ({beats})."
    parts = [f"**Where the EPP loses: {', '.join(losing)}.** It beat round-robin at {beats}."]
    if "p50" in losing:
        p50 = pickers["ratios"]["p50"]
        parts.append(
            f"At p50 both pickers' answers come from a fast replica (ratio {_ratio_cell(p50)}), so "
            "either side wins a pass by noise."
        )
    if set(losing) & {"p90", "p99"}:
        parts.append(
            "In the tail: the EPP (v1.0.1 default profile) scores queue + KV cache + prefix; its queue "
            "scorer reads vllm:num_requests_waiting, which stays 0 while the slow replica's batch slots "
            "are full and nothing queues yet, and the KV-cache use of these short requests differs "
            "little between replicas, so now and then it sends a request into the slow replica's full "
            "batch. Its bursts also start the slow batch's sequences together, so they end together: "
            "that request waits nearly a whole slow answer for a slot, longer than in round-robin's "
            "steady, staggered queue. A few such requests make the p99, while the slow replica's "
            "smaller share lowers the p90."
        )
    return " ".join(parts)


def _cells(rows: list[dict]) -> str:
    return " | ".join(_ms_cell(_spread([row[f"{name}_ms"] for row in rows])) for name in PERCENTILES)


def _ms_cell(spread: dict) -> str:
    return f"{spread['median']:.1f} ms [{spread['min']:.1f}, {spread['max']:.1f}]"


def _ratio_cell(spread: dict) -> str:
    return f"{spread['median']:.2f}x [{spread['min']:.2f}, {spread['max']:.2f}]"
