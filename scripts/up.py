"""`make up`: the sandbox plus Airflow (api-server, scheduler, dag-processor, triggerer) on loopback.

Ctrl-C (or SIGTERM) stops every process it started, workers included.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from scripts.airflow_stack import AirflowStack
from scripts.sandbox_process import airflow_connection_env, running_sandbox


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    home = Path(os.environ["AIRFLOW_HOME"])
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    # A playground: unpausing the DAG must not start the weekly rebuild of the last interval.
    os.environ.setdefault("GKE_INFERENCE_SCHEDULE", "none")
    # SIGTERM behaves like Ctrl-C, so `kill` of make's child also cleans up. SIGINT is set explicitly:
    # a shell starts background jobs with it ignored, and Python would keep it that way.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with (
        running_sandbox("demo", home / "up") as info,
        AirflowStack(home, port, airflow_connection_env(info)) as stack,
    ):
        try:
            stack.start()
            stack.wait_healthy()
            print(f"Airflow UI: {stack.url}  login admin / {stack.admin_password()}")
            print(f"Sandbox GCP API: {info['api_endpoint']}  admin: {info['admin_url']}")
            print(f"Component logs: {stack.logdir}.  Ctrl-C stops everything.", flush=True)
            while not stack.exited():
                time.sleep(1)
            print(f"Airflow components exited: {stack.exited()}; stopping the rest.", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nStopping...", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
