"""Parse cost: the DAG file's parse time against a one-task DAG's, each in a fresh interpreter.

Each parse runs in its own interpreter, so no module is cached from an earlier parse. Two figures:
- cold (the headline): the clock runs from before `import airflow` to the end of `DagBag(<file>)`,
  so both sides pay Airflow's own import cost alike and differ only by what their DAG file adds;
- Airflow preloaded: the cold parses of the DAG file list every `airflow.*` module (core, Task
  SDK, providers) they loaded; each timed interpreter imports all of those before its clock
  starts, so only the project's modules and the DAG's construction are timed.
Both sides run interleaved, `repeats` times each; each figure is the ratio of the medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_FILE = REPO / "dags" / "gke_inference_gateway.py"
PARSE_TIMEOUT_S = 120

ONE_TASK_DAG = """
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    EmptyOperator(task_id="only")
"""

# The child interpreter: import the modules named in argv[2:] (outside the clock), then time the
# import of DagBag (Airflow, unless preloaded) and the parse of the file argv[1].
PARSE_ONE_FILE = """
import importlib, json, sys, time

for module in sys.argv[2:]:
    importlib.import_module(module)
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
airflow_modules = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "errors": len(bag.import_errors),
                  "airflow_modules": airflow_modules}))
"""


def parse(dag_file: Path, preload: list[str]) -> dict:
    """One parse of `dag_file` in a fresh interpreter that first imports `preload`; raises if the
    parse does not yield exactly one DAG without import errors."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_ONE_FILE, str(dag_file), *preload],
        env=env,
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"parsing {dag_file.name} failed:\n{completed.stderr[-2000:]}")
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    if outcome["errors"] or outcome["dags"] != 1:
        raise RuntimeError(f"parsing {dag_file.name} gave {outcome}")
    return outcome


def _compare(dag_file: Path, baseline_file: Path, preload: list[str], repeats: int) -> dict:
    dag_times, baseline_times, airflow_modules = [], [], []
    # Interleaved, so a change in machine load touches both sides alike.
    for _ in range(repeats):
        dag_parse = parse(dag_file, preload)
        dag_times.append(dag_parse["seconds"])
        airflow_modules = dag_parse["airflow_modules"]
        baseline_times.append(parse(baseline_file, preload)["seconds"])
    dag_median, baseline_median = statistics.median(dag_times), statistics.median(baseline_times)
    return {
        "dag_s": dag_times,
        "one_task_s": baseline_times,
        "dag_median_s": dag_median,
        "one_task_median_s": baseline_median,
        "ratio": dag_median / baseline_median,
        "airflow_modules": airflow_modules,  # loaded by the DAG's last parse
    }


def measure(repeats: int = 3, dag_file: Path = DAG_FILE) -> dict:
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        baseline_file = Path(tmp) / "one_task_dag.py"
        baseline_file.write_text(ONE_TASK_DAG)
        cold = _compare(dag_file, baseline_file, [], repeats)
        airflow_modules = cold.pop("airflow_modules")
        preloaded = _compare(dag_file, baseline_file, airflow_modules, repeats)
    return {
        "repeats": repeats,
        "ratio": cold["ratio"],
        "cold": cold,
        "airflow_preloaded": {**preloaded, "airflow_modules": len(airflow_modules)},
    }
