"""An operator's first session in a real browser: log in, find the DAG, trigger it from the form,
watch the run succeed in the Grid, read a task's docs, the run report and the run's note, and see
the endpoint Asset start the load-test DAG.

Debian's chromium, headless, driven by Playwright (never `playwright install`). Screenshots go to a
temporary folder; set SCREENSHOT_DIR (e.g. docs/screenshots) to keep them.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from gke_inference.docs import TASK_DOCS
from gke_inference.endpoint_asset import SCHEME
from gke_inference.params import CHECKS, CLUSTER, GATEWAY, MODEL, NETWORK, RUN
from tests._tools import needs_tools
from tests.ui.conftest import DAG_ID, RunningAirflow, api_token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_S = 900
API_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000
DOCUMENTED_TASK = "cluster.ensure_cluster"
CONSUMER_DAG_ID = "gke_inference_load_test"
CONSOLE = "https://console.cloud.google.com"

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    needs_tools(CHROMIUM, hint="`apt-get install chromium`; .ci/run does it as root"),
]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(airflow_stack: RunningAirflow):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        yield page
        browser.close()


def api_get(stack: RunningAirflow, path: str) -> dict:
    token = api_token(stack.url, stack.username, stack.password)
    request = urllib.request.Request(
        f"{stack.url}/api/v2{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
        return json.load(response)


def api_send(stack: RunningAirflow, method: str, path: str, body: dict) -> dict:
    token = api_token(stack.url, stack.username, stack.password)
    request = urllib.request.Request(
        f"{stack.url}/api/v2{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
        return json.load(response)


def latest_manual_run(stack: RunningAirflow) -> dict | None:
    runs = api_get(stack, f"/dags/{DAG_ID}/dagRuns?run_type=manual&order_by=-run_after&limit=1")["dag_runs"]
    return runs[0] if runs else None


def wait_for_new_run(stack: RunningAirflow, previous_run_id: str | None) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = latest_manual_run(stack)
        if run and run["dag_run_id"] != previous_run_id:
            return run["dag_run_id"]
        time.sleep(1)
    raise AssertionError("the Trigger button created no run within 60 s")


def wait_for_run_end(stack: RunningAirflow, run_id: str) -> str:
    path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = api_get(stack, path)["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise AssertionError(f"run {run_id} did not finish within {RUN_TIMEOUT_S} s; logs in {stack.logdir}")


def console_links(stack: RunningAirflow, run_id: str, task_id: str) -> dict[str, str]:
    """The extra links Airflow computed for a finished task (the buttons its page shows)."""
    run = urllib.parse.quote(run_id, safe="")
    return api_get(stack, f"/dags/{DAG_ID}/dagRuns/{run}/taskInstances/{task_id}/links")["extra_links"]


def log_in(page, stack: RunningAirflow) -> None:
    page.goto(stack.url)
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Dags").first.wait_for()


def find_the_dag(page, stack: RunningAirflow) -> None:
    page.goto(f"{stack.url}/dags")
    page.get_by_placeholder("Search Dags").fill("gke_inference")
    page.get_by_role("link", name=DAG_ID, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/dags/{DAG_ID}(\?|$)"))


def trigger_from_the_form(page, screenshots: Path, *, dag_paused: bool) -> None:
    page.get_by_role("button", name="Trigger Dag").first.click()
    title = page.get_by_role("heading", name=f"Trigger Dag - {DAG_ID}")
    form = page.get_by_role("dialog").filter(has=title)
    for section in (NETWORK, CLUSTER, MODEL, GATEWAY, CHECKS, RUN):
        expect(form.get_by_role("button", name=section)).to_be_visible()
    form.get_by_role("button", name=GATEWAY).click()
    # Port 80 needs root on loopback; any user may listen on 8080.
    port = form.locator("input[name=element_gateway_port]")
    port.fill("8080")
    expect(port).to_have_value("8080")
    if dag_paused:  # new DAGs start paused; the form offers to unpause with the run
        expect(form.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger")).to_be_checked()
    page.screenshot(path=screenshots / "trigger-form.png")
    form.get_by_role("button", name="Trigger", exact=True).click()


def show_the_grid(page, stack: RunningAirflow, run_id: str, screenshots: Path) -> None:
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}")
    expect(page.get_by_text("Success").first).to_be_visible()
    expect(page.locator(f'[id="grid-{run_id}-run_report"]')).to_be_visible()
    expand = page.get_by_role("button", name="Expand all task groups")
    if expand.is_enabled():  # the UI remembers expanded groups between visits
        expand.click()
    expect(page.locator(f'[id="grid-{run_id}-cluster.wait_cluster_running"]')).to_be_visible()
    page.screenshot(path=screenshots / "grid-finished-run.png")


def read_task_docs(page, stack: RunningAirflow, screenshots: Path) -> None:
    page.goto(f"{stack.url}/dags/{DAG_ID}/tasks/{DOCUMENTED_TASK}")
    page.get_by_role("button", name="Documentation").click()
    first_words = TASK_DOCS[DOCUMENTED_TASK][0].split(",")[0]
    page.get_by_text(first_words).wait_for()
    page.get_by_text("By hand:").wait_for()
    page.screenshot(path=screenshots / "task-docs.png")


def read_run_report(page, stack: RunningAirflow, run_id: str, screenshots: Path) -> None:
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}/tasks/run_report")
    report = page.get_by_text("Run report:").first
    report.wait_for()
    page.get_by_text('"wrong_model_status": 404').wait_for()
    page.get_by_text('"gateway_url": "http://').wait_for()
    report.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "run-report-log.png")


def read_run_note(page, stack: RunningAirflow, run_id: str, screenshots: Path) -> None:
    """The run report as the run's note, rendered as markdown on the run's page."""
    note = api_get(stack, f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")["note"]
    assert note and note.startswith("### Run report: ensure of"), note
    assert "HTTP 404, rejected" in note
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}")
    # The run's header shows the note's first line; its button opens the whole note, rendered.
    page.get_by_role("heading", name=re.compile("Run report: ensure of")).first.wait_for()
    page.get_by_role("button", name="Edit note").click()
    note_dialog = page.get_by_role("dialog").filter(has=page.get_by_text("Dag Run Note"))
    expect(note_dialog.get_by_text("HTTP 404, rejected")).to_be_visible()
    expect(note_dialog.get_by_role("cell", name="cluster", exact=True)).to_be_visible()
    page.wait_for_timeout(1500)  # the dialog fades in; a screenshot mid-animation is see-through
    page.screenshot(path=screenshots / "run-note.png")
    page.keyboard.press("Escape")


def wait_for_consumer_run(stack: RunningAirflow) -> dict:
    """The load-test DAG's run that the endpoint's Asset event started (no one triggered it)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = api_get(stack, f"/dags/{CONSUMER_DAG_ID}/dagRuns?order_by=-run_after&limit=1")["dag_runs"]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(3)
    raise AssertionError(f"no {CONSUMER_DAG_ID} run finished within {RUN_TIMEOUT_S} s; see {stack.logdir}")


def show_the_asset_graph(page, stack: RunningAirflow, screenshots: Path) -> None:
    # The scheduler lists an Asset made through an alias once its periodic orphanage check runs.
    deadline = time.monotonic() + 300
    while not (assets := api_get(stack, f"/assets?uri_pattern={SCHEME}")["assets"]):
        assert time.monotonic() < deadline, "the endpoint Asset was never listed"
        time.sleep(5)
    [asset] = assets
    page.goto(f"{stack.url}/assets/{asset['id']}")
    page.get_by_text(asset["uri"]).first.wait_for()
    page.get_by_text(CONSUMER_DAG_ID).first.wait_for()
    page.get_by_text(DAG_ID, exact=True).first.wait_for()
    page.screenshot(path=screenshots / "endpoint-asset.png")


# A whole run through real Airflow processes: minutes on a busy machine, past the suite's default.
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_operator_triggers_a_run_and_reads_its_report(page, airflow_stack, screenshots):
    try:
        log_in(page, airflow_stack)
        find_the_dag(page, airflow_stack)
        # Unpaused, the load-test DAG is queued by the endpoint's Asset event when the run verifies it.
        api_send(airflow_stack, "PATCH", f"/dags/{CONSUMER_DAG_ID}", {"is_paused": False})
        before = latest_manual_run(airflow_stack)
        paused = api_get(airflow_stack, f"/dags/{DAG_ID}")["is_paused"]
        trigger_from_the_form(page, screenshots, dag_paused=paused)
        run_id = wait_for_new_run(airflow_stack, before and before["dag_run_id"])

        assert wait_for_run_end(airflow_stack, run_id) == "success", f"see {airflow_stack.logdir}"
        cluster_link = console_links(airflow_stack, run_id, DOCUMENTED_TASK)["GKE cluster"]
        assert cluster_link.startswith(f"{CONSOLE}/kubernetes/clusters/details/us-central1/"), cluster_link
        show_the_grid(page, airflow_stack, run_id, screenshots)
        read_task_docs(page, airflow_stack, screenshots)
        read_run_report(page, airflow_stack, run_id, screenshots)
        read_run_note(page, airflow_stack, run_id, screenshots)
        consumer_run = wait_for_consumer_run(airflow_stack)
        assert (consumer_run["state"], consumer_run["run_type"]) == ("success", "asset_triggered"), (
            consumer_run
        )
        show_the_asset_graph(page, airflow_stack, screenshots)
    except Exception:
        page.screenshot(path=screenshots / "failure.png")
        raise
