"""Per-task overhead (issue 14): seconds a task's ``execute`` adds above an EmptyOperator's, and
what it asks for on the way (connection lookups, access tokens, Kubernetes API discovery).

Each task runs in a fresh process, as an Airflow worker runs it: Airflow and the operator module are
already imported (the DAG file was parsed), the hooks and client libraries are not. The tasks run
as ensure reruns on a sandbox that already holds their resources, so their seconds are overhead,
not the twin's simulated waits. Request counts come from the twin's request log, in the time window
of each run.

    python -m bench.task_profile [--repeats N] [--pycache DIR] [--before DIR] [--json FILE]
    python -m bench.task_profile --profile TASK      # the cProfile of one run of TASK

``--before DIR`` measures another copy of the package (``DIR/gke_inference``) in the same rounds,
for a before/after under the same load; ``--pycache DIR`` lets the task processes keep compiled
bytecode, as a virtualenv installed with bytecode (pip's default, ``uv --compile-bytecode``) has it.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "gke_inference_gateway"
TASKS = (
    "empty",
    "project_network.ensure_network",
    "cluster.ensure_cluster",
    "model_server.apply_compute_class",
    "verify.check_chat_completion",
)
TOKEN_PATHS = ("/token",)
DISCOVERY_PATHS = ("/version", "/api", "/apis")


# --- in the child: build one task and time its execute ------------------------------------------


def build_task(task: str, target: dict) -> Any:
    """The task as the DAG builds it, on the target the parent prepared."""
    from airflow.sdk import DAG

    with DAG(DAG_ID, schedule=None):
        if task == "empty":
            from airflow.providers.standard.operators.empty import EmptyOperator

            return EmptyOperator(task_id="empty")
        gcp = {"project_id": target["project_id"], "gcp_conn_id": target["gcp_conn_id"]}
        cluster = {**gcp, "location": target["location"], "cluster_name": target["cluster_name"]}
        if task == "project_network.ensure_network":
            from gke_inference.operators.project_network import EnsureNetworkOperator

            return EnsureNetworkOperator(task_id="ensure_network", network_name=target["network_name"], **gcp)
        if task == "cluster.ensure_cluster":
            from gke_inference.operators.cluster import EnsureAutopilotClusterOperator

            return EnsureAutopilotClusterOperator(
                task_id="ensure_cluster",
                **cluster,
                network_name=target["network_name"],
                subnetwork_name="inference-subnet",
                pods_range_name="pods-range",
                services_range_name="services-range",
            )
        if task == "model_server.apply_compute_class":
            from gke_inference.operators.workloads import ApplyManifestsOperator

            return ApplyManifestsOperator(
                task_id="apply_compute_class",
                manifest="model-inference-class.yaml",
                values=target["values"],
                **cluster,
            )
        if task == "verify.check_chat_completion":
            from gke_inference.operators.checks import ChatCompletionCheckOperator

            values = target["values"]
            return ChatCompletionCheckOperator(
                task_id="check_chat_completion",
                **cluster,
                gateway_address=target["gateway_address"],
                port=values["gateway_port"],
                namespace=values["namespace"],
                gateway_name=values["gateway_name"],
                pool_name=values["pool_name"],
                model=values["model_name"],
            )
    raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")


class ImportClock:
    """Seconds spent in ``import`` statements (outermost only, so nested imports count once)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._original = builtins.__import__

    def __enter__(self) -> ImportClock:
        builtins.__import__ = self._timed
        return self

    def __exit__(self, *exc: object) -> None:
        builtins.__import__ = self._original

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        if self._depth:
            return self._original(*args, **kwargs)
        self._depth += 1
        start = time.perf_counter()
        try:
            return self._original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self._depth -= 1


def counting_connection_lookups() -> Callable[[], int]:
    """Count ``BaseHook.get_connection`` calls (each one a round trip to the API server in a worker)."""
    from airflow.sdk.bases.hook import BaseHook

    original = BaseHook.get_connection.__func__
    calls = []

    def get_connection(cls, conn_id):
        calls.append(conn_id)
        return original(cls, conn_id)

    BaseHook.get_connection = classmethod(get_connection)
    return lambda: len(calls)


def run_child(task: str, target: dict, profile: bool) -> dict:
    import airflow.sdk  # noqa: F401  (the worker has Airflow loaded before the task starts)

    operator = build_task(task, target)
    lookups = counting_connection_lookups()
    start, cpu_start = time.perf_counter(), time.process_time()
    with ImportClock() as imports:
        if profile:
            import cProfile

            cProfile.runctx("operator.execute({})", globals(), {"operator": operator}, sort="cumulative")
        else:
            operator.execute({})
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "import_seconds": imports.seconds,
        "connection_lookups": lookups(),
    }


# --- in the parent: a sandbox with the resources, one child per run -----------------------------


def prepare(sandbox) -> dict:
    """A RUNNING cluster on the tutorial's VPC, and the tutorial's serving stack behind a Gateway."""
    from tests.plugins.conftest import GCP_CONN_ID, build_cluster, create_namespace
    from tests.plugins.test_checks import DEFAULTS, serve

    cluster = build_cluster(sandbox, proxy_only_subnet=True)
    namespace = create_namespace(cluster.hook(), "profile")
    address = serve(cluster, namespace, body_routing=False)
    return {
        "project_id": cluster.project_id,
        "gcp_conn_id": GCP_CONN_ID,
        "location": cluster.location,
        "cluster_name": cluster.cluster_name,
        "network_name": cluster.network_name,
        "gateway_address": address,
        "values": {**DEFAULTS, "namespace": namespace, "project_id": cluster.project_id},
    }


def counts(entries: list[dict]) -> dict:
    entries = [e for e in entries if e["path"] != "/metrics"]  # the twin's Endpoint Picker scraping
    kube_gets = [e["path"] for e in entries if e["api"] == "kube" and e["method"] == "GET"]
    return {
        "token_fetches": sum(
            (e["method"] == "POST" and e["path"] in TOKEN_PATHS) or e["path"].endswith(":generateAccessToken")
            for e in entries
        ),
        "discovery": sum(path in DISCOVERY_PATHS or _is_group_version(path) for path in kube_gets),
        "requests": len(entries),
    }


def _is_group_version(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3)


def run_once(sandbox, task: str, target: dict, env: dict) -> dict:
    command = [sys.executable, "-m", "bench.task_profile", "--child", task, json.dumps(target)]
    start = time.time()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{task} failed:\n{done.stderr[-3000:]}")
    if os.environ.get("TASK_PROFILE_CPROFILE"):
        print(done.stdout)
    time.sleep(0.2)  # the twin logs a request once it has answered it
    entries = [e for e in sandbox.requests() if e["ts"] >= start]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), **counts(entries)}


def child_env(sandbox, pycache: Path | None, code: Path | None) -> dict:
    """The environment of a task process: the sandbox's connections; optionally a bytecode cache,
    and another copy of the package ahead of the installed one (to compare code versions)."""
    env = dict(os.environ)
    for conn_id, uri in sandbox.info["airflow_connections"].items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    if pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if code:
        env["PYTHONPATH"] = str(code)
    return env


def measure(variants: dict[str, dict], repeats: int, tasks: tuple[str, ...] = TASKS) -> dict:
    """``{variant: {task: [run, ...]}}``; rounds interleave tasks and variants, so a change in the
    machine's load touches all alike. ``variants`` maps a name to ``child_env`` keyword arguments."""
    from sandbox.testing import running_sandbox

    with running_sandbox(profile="instant") as sandbox:
        os.environ.update(
            {k: v for k, v in child_env(sandbox, None, None).items() if k.startswith("AIRFLOW_CONN_")}
        )
        envs = {name: child_env(sandbox, **options) for name, options in variants.items()}
        target = prepare(sandbox)
        runs: dict[str, dict[str, list[dict]]] = {name: {task: [] for task in tasks} for name in variants}
        for round_number in range(repeats + 1):
            for task in tasks:
                for name, env in envs.items():
                    result = run_once(sandbox, task, target, env)
                    if round_number:  # the first round warms the file cache and the bytecode cache
                        runs[name][task].append(result)
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict:
    floor = {key: statistics.median(r[key] for r in runs["empty"]) for key in ("seconds", "cpu_seconds")}
    summary = {}
    for task, results in runs.items():
        seconds = [r["seconds"] - floor["seconds"] for r in results]
        summary[task] = {
            "above_empty_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "cpu_above_empty_s": statistics.median(r["cpu_seconds"] - floor["cpu_seconds"] for r in results),
            "imports_s": statistics.median(r["import_seconds"] for r in results),
            **{
                key: statistics.median(r[key] for r in results)
                for key in ("connection_lookups", "token_fetches", "discovery", "requests")
            },
            "n": len(results),
        }
    return summary


def print_table(name: str, summary: dict) -> None:
    print(f"\n{name}")
    print(
        "task | wall s above empty [min, max] | CPU s above empty | imports s | conn lookups | tokens | discovery | requests"
    )
    for task, row in summary.items():
        print(
            f"{task} | {row['above_empty_s']:.2f} [{row['min_s']:.2f}, {row['max_s']:.2f}] (n={row['n']}) | "
            f"{row['cpu_above_empty_s']:.2f} | {row['imports_s']:.2f} | {row['connection_lookups']:g} | "
            f"{row['token_fetches']:g} | {row['discovery']:g} | {row['requests']:g}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the summaries here")
    parser.add_argument(
        "--pycache",
        type=Path,
        help="let the tasks cache compiled bytecode in this directory (as a venv installed with "
        "bytecode has it); by default they run as the environment says (PYTHONDONTWRITEBYTECODE)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a directory holding another copy of the gke_inference package (e.g. from git show): "
        "measured in the same rounds as the installed one, as 'before'",
    )
    parser.add_argument("--profile", metavar="TASK", help="print the cProfile of one run of TASK")
    parser.add_argument("--child", nargs=2, metavar=("TASK", "TARGET_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, target = args.child
        result = run_child(task, json.loads(target), profile=bool(os.environ.get("TASK_PROFILE_CPROFILE")))
        print(json.dumps(result))
        return
    if args.profile:
        os.environ["TASK_PROFILE_CPROFILE"] = "1"
        measure({"profile": {"pycache": args.pycache, "code": None}}, repeats=0, tasks=(args.profile,))
        return
    variants = {"installed": {"pycache": args.pycache, "code": None}}
    if args.before:
        variants = {"before": {"pycache": args.pycache, "code": args.before}, "after": variants["installed"]}
    load = os.getloadavg()[0]
    runs = measure(variants, args.repeats)
    print(
        f"1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, {os.cpu_count()} CPUs"
    )
    print(f"bytecode cache: {args.pycache or 'as the environment says'}")
    summaries = {name: summarize(variant_runs) for name, variant_runs in runs.items()}
    for name, summary in summaries.items():
        print_table(name, summary)
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
