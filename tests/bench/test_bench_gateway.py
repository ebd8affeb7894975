"""`make bench`'s gateway and picker figures (bench/gateway.py) on tiny request counts.

No timing assertions: the figures are well formed and agree with the per-pass numbers they come
from, the passes alternate, the warm-up is served but not counted, and the BENCHMARKS.md section
says where the EPP loses.
"""

from __future__ import annotations

import statistics

import pytest

from bench import gateway

TINY_LATENCY = gateway.LatencySettings(requests=6, rounds=3, concurrency=2, warmup=4)
TINY_PICKERS = gateway.PickerSettings(
    requests=9, passes=3, concurrency=3, warmup=5, replicas=2, slowdown=3.0, max_num_seqs=2
)
FIGURE_KEYS = {"label", "median", "min", "max", "unit", "target", "at_most", "passes"}


def assert_well_formed(figure: dict, repeats: int) -> None:
    assert set(figure) == FIGURE_KEYS
    assert len(figure["passes"]) == repeats
    assert figure["median"] == statistics.median(figure["passes"])
    assert (figure["min"], figure["max"]) == (min(figure["passes"]), max(figure["passes"]))
    assert isinstance(figure["at_most"], bool) and figure["unit"] in {"ms", "x"}


@pytest.fixture(scope="module")
def latency() -> dict:
    return gateway.measure_latency(settings=TINY_LATENCY)


@pytest.fixture(scope="module")
def pickers() -> dict:
    return gateway.measure_pickers(settings=TINY_PICKERS)


def test_latency_rounds_alternate_and_the_warm_up_is_served_but_not_counted(latency):
    # The path that goes first alternates from round to round.
    assert latency["order"] == ["direct", "gateway", "gateway", "direct", "direct", "gateway"]
    assert [p["requests"] for p in latency["passes"]] == [TINY_LATENCY.requests] * 6
    # The model server's own counter saw the warm-up too: it ran, outside the passes.
    assert latency["served_by_model_server"] == 2 * TINY_LATENCY.warmup + 6 * TINY_LATENCY.requests


def test_latency_overhead_is_the_median_of_each_rounds_gateway_minus_direct(latency):
    rounds = {(p["round"], p["path"]): p for p in latency["passes"]}
    for name in gateway.PERCENTILES:
        expected = [
            rounds[(index, "gateway")][f"{name}_ms"] - rounds[(index, "direct")][f"{name}_ms"]
            for index in range(TINY_LATENCY.rounds)
        ]
        assert latency["overhead_ms"][name]["passes"] == expected
    (figure,) = latency["figures"]
    assert_well_formed(figure, TINY_LATENCY.rounds)
    assert figure["passes"] == latency["overhead_ms"]["p50"]["passes"]
    assert (figure["label"], figure["unit"], figure["target"]) == (gateway.LATENCY_P50_LABEL, "ms", 3.0)
    for path in gateway.PATHS:
        assert latency[path]["p99_ms"] >= latency[path]["p50_ms"] > 0


def test_picker_passes_alternate_and_the_warm_up_is_served_but_not_counted(pickers):
    assert pickers["order"] == ["epp", "round_robin"] * TINY_PICKERS.passes
    assert [p["pass"] for p in pickers["passes"]] == [0, 0, 1, 1, 2, 2]
    assert [p["requests"] for p in pickers["passes"]] == [TINY_PICKERS.requests] * 6
    assert pickers["served_by_model_servers"] == 2 * TINY_PICKERS.warmup + 6 * TINY_PICKERS.requests


def test_picker_ratios_pair_each_epp_pass_with_the_round_robin_pass_beside_it(pickers):
    passes = pickers["passes"]
    for name in gateway.PERCENTILES:
        expected = [passes[i][f"{name}_ms"] / passes[i + 1][f"{name}_ms"] for i in range(0, len(passes), 2)]
        assert pickers["ratios"][name]["passes"] == expected
        wins = sum(ratio < 1 for ratio in expected)
        verdict = pickers["epp_beats_round_robin"][name]
        assert verdict == {0: "no pass", 3: "every pass"}.get(wins, f"{wins} of 3 passes")
    figures = {figure["label"]: figure for figure in pickers["figures"]}
    assert set(figures) == set(gateway.PICKER_LABELS.values())
    for name, label in gateway.PICKER_LABELS.items():
        assert_well_formed(figures[label], TINY_PICKERS.passes)
        assert figures[label]["passes"] == pickers["ratios"][name]["passes"]
        assert figures[label]["target"] == gateway.PICKER_TARGETS[name]
    for picker in gateway.PICKERS:
        assert 0 <= pickers[picker]["slow_pod_share"] <= 1


def test_fewer_than_three_passes_are_refused():
    with pytest.raises(ValueError, match=">= 3 repeats"):
        gateway.PickerSettings(passes=2)
    with pytest.raises(ValueError, match=">= 3 repeats"):
        gateway.LatencySettings(rounds=1)


def picker_pass(index: int, picker: str, p50: float, p90: float, p99: float) -> dict:
    return {
        "pass": index,
        "picker": picker,
        "requests": 10,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "requests_per_s": 50.0,
        "slow_pod_share": 0.2 if picker == "epp" else 0.33,
    }


def test_the_section_names_where_the_epp_loses(latency):
    # EPP: a better p90 in every pass, a worse p99 in every pass, p50 a toss-up (won in one pass).
    passes = []
    for index, epp_p50 in enumerate((49.0, 51.0, 52.0)):
        passes += [
            picker_pass(index, "epp", epp_p50, 260.0, 510.0),
            picker_pass(index, "round_robin", 50.0, 410.0, 460.0),
        ]
    result = gateway.picker_result(TINY_PICKERS, "pod-0", passes, served=0)
    assert result["epp_beats_round_robin"] == {"p50": "1 of 3 passes", "p90": "every pass", "p99": "no pass"}

    text = gateway.markdown_section(latency, result)
    assert "**Where the EPP loses: p50, p99.**" in text
    assert "p90 in every pass, p99 in no pass" in text
    assert "| EPP / round-robin | | 1.02x [0.98, 1.04] | 0.63x [0.63, 0.63] | 1.11x [1.11, 1.11] |" in text
    assert "| gateway - direct |" in text

    winning = [p if p["picker"] == "round_robin" else {**p, "p50_ms": 40.0, "p99_ms": 400.0} for p in passes]
    text = gateway.markdown_section(latency, gateway.picker_result(TINY_PICKERS, "pod-0", winning, 0))
    assert "Where the EPP loses" not in text
    assert "The EPP beat round-robin at every percentile in every pass" in text


def test_the_section_says_what_was_not_measured():
    text = gateway.markdown_section({"error": "RuntimeError: boom"}, {"error": "TimeoutError: slow"})
    assert "Gateway latency not measured: RuntimeError: boom." in text
    assert "Picker comparison not measured: TimeoutError: slow." in text
