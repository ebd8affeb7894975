"""`make demo`: start the sandbox, run the whole DAG against it, print what happened."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from scripts.sandbox_process import REPO, airflow_connection_env, running_sandbox

DAG_ID = "gke_inference_gateway"
REPORT_TASK_ID = "run_report"


def demo_conf() -> dict:
    # A gateway listens on port 80 as on GKE; an unprivileged user cannot bind it on loopback.
    return {} if os.geteuid() == 0 else {"gateway_port": 8080}


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.dags[DAG_ID]


def main() -> int:
    # The demo profile's waits are seconds long; retry as quickly.
    os.environ.setdefault("GKE_INFERENCE_RETRY_DELAY_SECONDS", "5")
    workdir = Path(os.environ["AIRFLOW_HOME"]) / "demo"
    print(f"Starting the sandbox (profile demo); its log is {workdir / 'sandbox.log'}", flush=True)
    with running_sandbox("demo", workdir) as info:
        os.environ.update(airflow_connection_env(info))
        print(f"Sandbox GCP API at {info['api_endpoint']}, project {info['project_id']}", flush=True)
        dag = load_dag()
        started = time.monotonic()
        dag_run = dag.test(run_conf=demo_conf())
        elapsed = time.monotonic() - started
    print_summary(dag_run, elapsed)
    return 0 if dag_run.state == "success" else 1


def print_summary(dag_run, elapsed_s: float) -> None:
    task_instances = sorted(
        dag_run.get_task_instances(), key=lambda ti: (ti.start_date is None, ti.start_date)
    )
    width = max(len(ti.task_id) for ti in task_instances)
    print(f"\nRun {dag_run.run_id}: {dag_run.state} in {elapsed_s:.1f} s\n")
    print(f"{'task':<{width}}  {'state':<16} tries  seconds")
    for ti in task_instances:
        duration = f"{ti.duration:7.1f}" if ti.duration is not None else "      -"
        print(f"{ti.task_id:<{width}}  {str(ti.state):<16} {ti.try_number:>5}  {duration}")
    report = run_report(dag_run)
    if report:
        print("\nRun report:")
        print(json.dumps(report, indent=2, ensure_ascii=False))


def run_report(dag_run) -> dict | None:
    """The `run_report` task's XCom of a finished run, read from the metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=REPORT_TASK_ID)
    with create_session() as session:
        row = session.scalars(query.where(XComModel.key == "return_value")).first()
        return XComModel.deserialize_value(row) if row is not None else None


if __name__ == "__main__":
    sys.exit(main())
