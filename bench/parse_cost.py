"""Parse cost: the DAG file's parse against a one-task DAG's, as the dag-processor sees a changed file.

Warm (the headline). Airflow's dag-processor keeps Airflow imported and, per file, pre-imports the
`airflow.*` modules the file names, then forks a child that runs
`airflow.dag_processing.processor._parse_file`: a stability check, a DagBag of that one file, and
the serialization of its DAGs (airflow/dag_processing/processor.py: `DagFileProcessorProcess.start`,
`_parse_file`). So one interpreter imports the processor, the Task SDK and EmptyOperator (what a
one-task DAG needs), serializes an in-memory one-task DAG (the serializer's first-use imports, which
a running dag-processor has long paid), and then, for each parse, pre-imports the file's Airflow
imports and forks a child; the child times `_parse_file` of the file. gke_inference is never
imported before a child's clock starts, and each child starts from the same parent, so nothing one
parse imports is cached for the next.

Cold (the second line). A fresh interpreter per parse; the clock runs from before `import airflow`
to the end of the same `_parse_file`, so both sides pay Airflow's own import alike.

Both sides run interleaved, `repeats` times each, after one untimed pair that writes the bytecode
caches (a deployment reads cached bytecode). Every figure is the median over the repeats with
min-max; a ratio's spread comes from the pairs (the DAG's parse / the one-task parse next to it).
A last figure is the warm parse of the DAG file with the shipped example environments
(include/environments/), where the file builds one DAG per environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.stats import spread

REPO = Path(__file__).resolve().parent.parent
DAG_FILE = REPO / "dags" / "gke_inference_gateway.py"
# The shipped example environments: the DAG file builds one DAG per environment (the factory).
EXAMPLE_ENVIRONMENTS = REPO / "include" / "environments"
PARSE_TIMEOUT_S = 300
REPEATS = {"full": 5, "quick": 3}
WARM_PARSE_GOAL_MS = 50

ONE_TASK_DAG = """
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    EmptyOperator(task_id="only")
"""

# The dag-processor's child's work, timed: `_parse_file` as Airflow runs it, with its two big steps
# wrapped (they are module globals, looked up when called) to split the time. Prints one JSON line.
CHILD = """
def timed_parse(path, clock_started):
    import json, os, sys, time
    from pathlib import Path

    import structlog
    from airflow.dag_processing import processor

    phases, bags = {}, []

    def timing(name, step):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
        return run

    bundle_dag_bag = processor.BundleDagBag

    def dagbag(*args, **kwargs):  # kept, to count what was parsed
        bags.append(bundle_dag_bag(*args, **kwargs))
        return bags[-1]

    processor.BundleDagBag = timing("dagbag_s", dagbag)
    processor._serialize_dags = timing("serialize_s", processor._serialize_dags)
    before = set(sys.modules)
    request = processor.DagFileParseRequest(file=path, bundle_path=Path(path).parent, bundle_name="bench")
    result = processor._parse_file(request, structlog.get_logger())
    seconds = time.perf_counter() - clock_started
    print(json.dumps({
        "file": os.path.basename(path),
        "seconds": seconds,
        **phases,
        "dags": len(result.serialized_dags),
        "tasks": sum(len(dag.tasks) for bag in bags for dag in bag.dags.values()),
        "params": sum(len(dag.params) for bag in bags for dag in bag.dags.values()),
        "errors": sorted(result.import_errors),
        "new_modules": sorted(set(sys.modules) - before),
    }), flush=True)
"""

# One interpreter per run: warm up as a running dag-processor is, then fork a child per parse.
WARM = (
    CHILD
    + """
import json, os, sys, time
import pendulum, structlog
import airflow.sdk
from airflow.dag_processing import processor
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.serialization.serialized_objects import DagSerialization

with airflow.sdk.DAG(dag_id="warm_up", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    EmptyOperator(task_id="only")
DagSerialization.to_dict(dag)
assert not any(name.startswith("gke_inference") for name in sys.modules), "gke_inference imported before the clock"
for path in sys.argv[1:]:
    processor._pre_import_airflow_modules(path, structlog.get_logger())  # as the processor does, before its fork
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            timed_parse(path, time.perf_counter())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
"""
)

COLD = (
    """
import sys, time
clock_started = time.perf_counter()
"""
    + CHILD
    + """
timed_parse(sys.argv[1], clock_started)
"""
)


def _run(script: str, files: list[Path], environments: Path | None = None) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A deployment's dag-processor reads cached bytecode; without it every parse recompiles our
    # modules (~35 ms here). __pycache__/ is git-ignored.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("GKE_INFERENCE_ENVIRONMENTS_DIR", None)
    if environments:
        env["GKE_INFERENCE_ENVIRONMENTS_DIR"] = str(environments)
    completed = subprocess.run(
        [sys.executable, "-c", script, *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT_S,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{"file"')]
    if completed.returncode != 0 or len(lines) != len(files):
        names = ", ".join(path.name for path in files)
        raise RuntimeError(f"parsing {names} failed:\n{completed.stderr[-2000:]}")
    outcomes = [json.loads(line) for line in lines]
    dag_file_dags = _environment_count(environments)
    for outcome in outcomes:
        expected = dag_file_dags if outcome["file"] == DAG_FILE.name else 1
        if outcome["errors"] or outcome["dags"] != expected:
            raise RuntimeError(
                f"parsing {outcome['file']} gave {outcome['dags']} DAGs, errors {outcome['errors']}"
            )
    return outcomes


def _environment_count(environments: Path | None) -> int:
    """How many DAGs the DAG file builds with these environments (none: the one DAG)."""
    if environments is None:
        return 1
    from gke_inference import environments as definitions

    return len(definitions.load(environments)) or 1


def warm_parses(files: list[Path], environments: Path | None = None) -> list[dict]:
    """One warm parse of each file, in that order, each in its own child of one warmed-up parent;
    `environments`: the DAG file's environments directory (none: no environment, the one DAG)."""
    return _run(WARM, files, environments)


def cold_parse(dag_file: Path) -> dict:
    """One parse of `dag_file` in a fresh interpreter, Airflow's import included."""
    return _run(COLD, [dag_file])[0]


def _side(parses: list[dict]) -> dict:
    seconds = [parse["seconds"] for parse in parses]
    figures = {"seconds": seconds, "ms": spread([1000 * s for s in seconds])}
    figures.update(tasks=parses[-1]["tasks"], params=parses[-1]["params"])
    for phase in ("dagbag_s", "serialize_s"):
        figures[phase] = spread([parse.get(phase, 0.0) for parse in parses])
    return figures


def _compare(dag_parses: list[dict], one_task_parses: list[dict]) -> dict:
    ratios = [dag["seconds"] / one["seconds"] for dag, one in zip(dag_parses, one_task_parses, strict=True)]
    return {"dag": _side(dag_parses), "one_task": _side(one_task_parses), "ratio": spread(ratios)}


def measure(repeats: int | None = None, dag_file: Path = DAG_FILE, quick: bool = False) -> dict:
    repeats = repeats or REPEATS["quick" if quick else "full"]
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        one_task_file = Path(tmp) / "one_task_dag.py"
        one_task_file.write_text(ONE_TASK_DAG)
        # Interleaved, so a change in machine load touches both sides alike; the first pair only
        # writes the bytecode caches, as any earlier parse of these files would have.
        warm = warm_parses([dag_file, one_task_file] * (repeats + 1))[2:]
        cold = [cold_parse(path) for _ in range(repeats) for path in (dag_file, one_task_file)]
    dag_warm = warm[0::2]
    # Our bytecode is cached by now (the warm run's first pair).
    factory = warm_parses([dag_file] * repeats, EXAMPLE_ENVIRONMENTS)
    result = {
        "repeats": repeats,
        "definition": "dag-processor child: processor._parse_file (stability check, DagBag, serialization)",
        "warm": _compare(dag_warm, warm[1::2]),
        "cold": _compare(cold[0::2], cold[1::2]),
        "example_environments": {"dags": _environment_count(EXAMPLE_ENVIRONMENTS), **_side(factory)},
        # What the DAG file imports beyond the one-task DAG's warm parse (the last pair).
        "modules_beyond_one_task": sorted(set(dag_warm[-1]["new_modules"]) - set(warm[-1]["new_modules"])),
    }
    result["figures"] = figures(result)
    return result


def figures(result: dict) -> list[dict]:
    """The table's rows (bench/report.py renders them): the warm parse first, the cold ratio second."""
    warm, cold, factory = result["warm"], result["cold"], result["example_environments"]
    return [
        {
            "label": "6a. parse (warm): this DAG",
            **warm["dag"]["ms"],
            "unit": "ms",
            "target": WARM_PARSE_GOAL_MS,
        },
        {"label": "6b. parse (warm): a one-task DAG", **warm["one_task"]["ms"], "unit": "ms"},
        {"label": "6c. parse (warm): this DAG / a one-task DAG", **warm["ratio"], "unit": "x"},
        {"label": "6d. parse (cold): this DAG / a one-task DAG", **cold["ratio"], "unit": "x"},
        {
            "label": f"6e. parse (warm): the DAG file with the {factory['dags']} example environments",
            **factory["ms"],
            "unit": "ms",
        },
    ]


def markdown_section(result: dict) -> str:
    warm = result.get("warm")
    if not warm:
        return "`bench/parse_cost.py`: not measured.\n"
    dag, factory = warm["dag"], result["example_environments"]

    def ms(figure: dict) -> str:
        return f"{1000 * figure['median']:.0f} ms [{1000 * figure['min']:.0f}, {1000 * figure['max']:.0f}]"

    modules = result.get("modules_beyond_one_task") or []
    ours = [name for name in modules if name.startswith("gke_inference")]
    return (
        "`bench/parse_cost.py`. Warm: what the dag-processor's child does for a changed file "
        "(`processor._parse_file`: stability check, DagBag of the one file, serialization), forked from "
        "a parent with Airflow, the Task SDK and EmptyOperator imported and one DAG already serialized; "
        "cold: the same in a fresh interpreter, Airflow's import included. "
        f"Medians over {result['repeats']} parses each [min, max].\n\n"
        f"- this DAG's warm parse: DagBag (our imports and the DAG's construction) {ms(dag['dagbag_s'])}, "
        f"serialization {ms(dag['serialize_s'])}\n"
        f"- modules it loads beyond the one-task DAG's: {len(modules)}, of which {len(ours)} gke_inference\n"
        # airflow/serialization/serialized_objects.py serialize_to_json: the "params" field goes through
        # _is_excluded (ParamsDict.__eq__) and serialize (str: ParamsDict.__repr__), each a dump() that
        # validates every param against its JSON schema (Param.resolve), before _serialize_params_dict
        # replaces it: 2 validations per param per task. Upstream: apache/airflow#32434.
        f"- where the serialization goes: every task carries the DAG's {dag['params']} params, and "
        f"Airflow's serializer validates each against its JSON schema twice per task: "
        f"{2 * dag['params'] * dag['tasks']} validations for its {dag['tasks']} tasks\n"
        f"- with the {factory['dags']} example environments (`include/environments/`, one DAG each): "
        f"{ms(factory['dagbag_s'])} DagBag, {ms(factory['serialize_s'])} serialization\n"
    )
