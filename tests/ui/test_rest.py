"""The README's REST sequence (token, unpause, trigger with conf, poll, read the report), run verbatim.

The fenced block after the marker `<!-- rest-sequence -->` in README.md is run with bash against
the shared stack, as an operator would paste it after `make up`. It asks for a teardown: the
browser test has built the environment by then, and a teardown is the cheapest whole run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests._tools import needs_tools
from tests.ui.conftest import RunningAirflow

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- rest-sequence -->"
SEQUENCE_TIMEOUT_S = 600

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    needs_tools("curl", "jq", hint="the README's sequence needs them"),
]


def rest_sequence() -> str:
    text = README.read_text()
    assert MARKER in text, f"README.md lost the marker {MARKER} before its REST sequence"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert block, f"no ```bash block after {MARKER}"
    return block.group(1)


@pytest.mark.timeout(SEQUENCE_TIMEOUT_S + 60)
def test_readme_rest_sequence_runs_a_dag_run(airflow_stack: RunningAirflow):
    env = {
        **os.environ,
        "AIRFLOW_URL": airflow_stack.url,
        "AIRFLOW_PASSWORD": airflow_stack.password,
        "RUN_CONF": '{"mode": "teardown", "gateway_port": 8080}',
        "POLL_SECONDS": "2",
    }
    done = subprocess.run(
        ["bash", "-eu", "-o", "pipefail", "-c", rest_sequence()],
        env=env,
        capture_output=True,
        text=True,
        timeout=SEQUENCE_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert airflow_stack.password not in done.stdout + done.stderr
    ending = re.search(r"^run (\S+): (\w+)$", done.stdout, re.MULTILINE)
    assert ending and ending.group(2) == "success", done.stdout
    report = json.loads(done.stdout[ending.end() :])
    assert report["mode"] == "teardown"
    assert report["gateway_url"] is None and report["created"] == []
