"""`bench/results.json`, `bench/history.json` and `BENCHMARKS.md` from one bench run.

Every figure is a row {label, median, min, max, n, unit, target, at_most, retried, paths}: the
median over its repeats with min-max, its goal (None: reported, no goal), the retried tasks of the
runs it came from, and the code it describes (for stale marking). The gateway's rows come from
bench/gateway.py, the parse rows from bench/parse_cost.py; the rest are built here.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import narrative
from bench.staleness import CODE_PATHS, is_stale

REPO = Path(__file__).resolve().parent.parent
RESULTS_JSON = REPO / "bench" / "results.json"
QUICK_RESULTS_JSON = REPO / "bench" / "results-quick.json"
HISTORY_JSON = REPO / "bench" / "history.json"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
HISTORY_KEPT = 8

# (label, section, key, unit, target, at_most)
DAG_RUN_FIGURES = (
    ("1a. DAG wall above the floor DAG's: (DAG - floor) / floor", "overhead", "ratio", "%", 0.15, True),
    ("1b. per-task running time above the floor, median", "overhead", "per_task_median_s", "s", None, True),
    ("1c. per-task running time above the floor, p90", "overhead", "per_task_p90_s", "s", None, True),
    ("2a. DAG wall / measured critical path", "critical_path", "ratio_to_critical_path", "x", None, True),
    (
        "2b. overhead / critical path at real-GKE scale",
        "critical_path",
        "overhead_share_at_real_scale",
        "%",
        None,
        True,
    ),
    ("3. parallel wall / sequential wall (parallelism 1)", "sequential", "ratio", "x", None, True),
    (
        "4a. slot-seconds held by the four waits / their deferred time",
        "worker_slots",
        "ratio",
        "%",
        None,
        True,
    ),
    ("4b. of which before deferring / deferred time", "worker_slots", "pre_deferral_ratio", "%", 0.05, True),
    ("5a. objects created by the ensure rerun", "rerun", "creates", "count", 0, True),
    # "A rerun should cost about the floor": the same 15% allowance as figure 1a.
    ("5b. rerun wall / floor wall", "rerun", "ratio_to_floor", "x", 1.15, True),
)
SECTION_PATHS = {"parse_cost": ("src", "dags", "bench"), "gateway": ("sandbox", "bench")}


def _as_spread(value) -> dict | None:  # noqa: ANN001
    if isinstance(value, dict) and "median" in value:
        n = value.get("n", len(value.get("passes") or []) or 1)
        return {"median": value["median"], "min": value.get("min"), "max": value.get("max"), "n": n}
    if isinstance(value, int | float):
        return {"median": value, "min": value, "max": value, "n": 1}
    return None


def dag_run_rows(results: dict) -> list[dict]:
    rows = []
    for label, section, key, unit, target, at_most in DAG_RUN_FIGURES:
        part = results.get(section) or {}
        spread = _as_spread(part.get(key)) or {"median": None, "min": None, "max": None, "n": 0}
        rows.append(
            {
                "label": label,
                **spread,
                "unit": unit,
                "target": target,
                "at_most": at_most,
                "retried": part.get("retried_tasks") or [],
                "paths": CODE_PATHS,
            }
        )
    return rows


def parse_rows(results: dict) -> list[dict]:
    """bench/parse_cost.py's figures: its own rows if it gives them, else one per side it measured."""
    parse = results.get("parse_cost") or {}
    if "figures" in parse:
        rows = parse["figures"]
    else:
        rows = []
        for side in ("warm", "cold"):
            spread = _as_spread((parse.get(side) or {}).get("ratio"))
            if spread:
                rows.append({"label": f"6. parse ({side}): this DAG / a one-task DAG", **spread, "unit": "x"})
    return [_complete(row, SECTION_PATHS["parse_cost"]) for row in rows]


def gateway_rows(results: dict) -> list[dict]:
    rows = [
        row
        for name in ("gateway_latency", "gateway_pickers")
        for row in (results.get(name) or {}).get("figures") or []
    ]
    return [_complete(row, SECTION_PATHS["gateway"]) for row in rows]


def _complete(row: dict, paths: tuple[str, ...]) -> dict:
    spread = _as_spread(row) or {"median": None, "min": None, "max": None, "n": 0}
    return {
        "target": None,
        "at_most": True,
        "retried": [],
        **row,
        **spread,
        "paths": paths,
    }


def rows(results: dict) -> list[dict]:
    return [*dag_run_rows(results), *parse_rows(results), *gateway_rows(results)]


def met(row: dict) -> bool | None:
    if row["median"] is None or row.get("target") is None:
        return None
    return row["median"] <= row["target"] if row.get("at_most", True) else row["median"] >= row["target"]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return {
        "x": lambda v: f"{v:.3f}x" if abs(v) < 10 else f"{v:.1f}x",
        "%": lambda v: f"{100 * v:.1f}%",
        "ms": lambda v: f"{v:.1f} ms",
        "s": lambda v: f"{v:.2f} s",
        "count": lambda v: f"{v:.0f}",
    }.get(unit, lambda v: f"{v:.3g} {unit}")(value)


def cell(row: dict) -> str:
    if row["median"] is None:
        return "not measured"
    if row["n"] <= 1:
        return f"{fmt(row['median'], row['unit'])} (n=1)"
    return (
        f"{fmt(row['median'], row['unit'])} [{fmt(row['min'], row['unit'])}, "
        f"{fmt(row['max'], row['unit'])}] (n={row['n']})"
    )


def history_entry(results: dict) -> dict:
    return {
        "started_at": results.get("started_at"),
        "code": results.get("code") or {},
        "load_avg_1m": (results.get("machine") or {}).get("load_avg_1m"),
        "figures": {row["label"]: {"median": row["median"], "met": met(row)} for row in rows(results)},
    }


def with_run(history: list[dict], results: dict) -> list[dict]:
    """The history with this full run appended (write() keeps quick runs out)."""
    return [*history, history_entry(results)][-HISTORY_KEPT:]


def across_runs(label: str, unit: str, history: list[dict]) -> str:
    seen = [run["figures"][label] for run in history if label in run.get("figures", {})]
    medians = [s["median"] for s in seen if s["median"] is not None]
    if not medians:
        return "-"
    text = f"{len(medians)} runs: {fmt(min(medians), unit)} to {fmt(max(medians), unit)}"
    verdicts = [s["met"] for s in seen if s["met"] is not None]
    if verdicts and all(verdicts):
        return f"{text}; met in all"
    if verdicts and not any(verdicts):
        return f"{text}; missed in all"
    if verdicts:
        return f"{text}; **met in {sum(verdicts)}, missed in {len(verdicts) - sum(verdicts)}**"
    return text


def table(results: dict, history: list[dict], repo: Path = REPO) -> str:
    commit = (results.get("code") or {}).get("commit")
    lines = [
        "| figure | latest: median [min, max] (n) | goal | | across the last runs | stale? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(results):
        verdict = {True: "met", False: "**missed**", None: "-"}[met(row)]
        if row.get("retried"):
            verdict += f" (retried: {', '.join(row['retried'])})"
        goal = (
            "-"
            if row.get("target") is None
            else ("<= " if row["at_most"] else ">= ") + fmt(row["target"], row["unit"])
        )
        stale = is_stale(commit, tuple(row["paths"]), repo)
        stale_text = {True: "**stale**", False: "no", None: "unknown"}[stale]
        lines.append(
            f"| {row['label']} | {cell(row)} | {goal} | {verdict} | "
            f"{across_runs(row['label'], row['unit'], history)} | {stale_text} |"
        )
    return "\n".join(lines)


def markdown(results: dict, history: list[dict], repo: Path = REPO) -> str:
    machine, code = results.get("machine", {}), results.get("code") or {}
    commit = (code.get("commit") or "unknown")[:12]
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` at {results.get('started_at', '?')} on {machine.get('cpus', '?')} CPUs "
        f"(1-minute load average {machine.get('load_avg_1m', 0):.1f} when it started); the run took "
        f"{results.get('bench_wall_s', 0):.0f} s. Measured on commit `{commit}`"
        + (" with uncommitted changes under src/, dags/, sandbox/ or bench/" if code.get("dirty") else "")
        + ". Every figure is a ratio (or difference) of two things measured in the same run: the median "
        "over its repeats with [min, max] and n; the raw numbers are in `bench/results.json`, the last "
        f"{HISTORY_KEPT} full runs' figures in `bench/history.json`. A figure is **stale** when src/, dags/, "
        "sandbox/ or bench/ (the parts it depends on) changed between its commit and HEAD. "
        "`python -m bench --quick` is for development (fewer repeats, results in "
        "`bench/results-quick.json`, never in the history).",
        "",
        table(results, history, repo),
        "",
        *narrative.sections(results),
    ]
    return "\n".join(parts).rstrip() + "\n"


def load(path: Path, default):  # noqa: ANN001, ANN201
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write(
    results: dict,
    results_path: Path | None = None,
    history_path: Path = HISTORY_JSON,
    markdown_path: Path = BENCHMARKS_MD,
    repo: Path = REPO,
) -> None:
    """A full run: results, history and BENCHMARKS.md. A quick run: its own results file only."""
    if results.get("quick"):
        (results_path or QUICK_RESULTS_JSON).write_text(_json(results))
        return
    history = with_run(load(history_path, []), results)
    (results_path or RESULTS_JSON).write_text(_json(results))
    history_path.write_text(_json(history))
    markdown_path.write_text(markdown(results, history, repo))


def _json(value) -> str:  # noqa: ANN001
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
