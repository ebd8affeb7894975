"""The run report as markdown for the run's note, and writing it there only when a connection says
where the Airflow REST API is."""

from __future__ import annotations

import logging

import pytest

from gke_inference.operators.report import report_markdown
from gke_inference.run_note import NOTE_MAX_CHARS, set_run_note

REPORT = {
    "project_id": "lab-123",
    "mode": "ensure",
    "section_seconds": {"project_network": 12.5, "cluster": 301.0, "verify": 40.2},
    "gateway_url": "http://10.0.0.7:80",
    "model_reply": "GKE Inference Gateway routes\\n requests   to the right model.",
    "served_by_pod": "vllm-llama3-1-8b-instruct-abc",
    "wrong_model_status": 404,
    "created": ["Network/inference-vpc", "Cluster/us-central1/lab"],
    "found": ["Api/compute.googleapis.com"],
    "deleted": [],
    "retried": {"cluster.wait_cluster_running": 2},
}


def test_the_note_has_the_endpoint_reply_rejection_sections_and_objects():
    note = report_markdown(REPORT, "manual__1")
    assert note.startswith("### Run report: ensure of `lab-123`")
    assert "- **Endpoint:** http://10.0.0.7:80" in note
    assert "(pod `vllm-llama3-1-8b-instruct-abc`)" in note
    assert "- **Wrong model:** HTTP 404, rejected" in note
    assert "- **Retries:** `cluster.wait_cluster_running` (try 2)" in note
    assert "| cluster | 301.0 |" in note and "| verify | 40.2 |" in note
    assert "- **Created (2):** `Network/inference-vpc`, `Cluster/us-central1/lab`" in note
    assert "- **Found (1):** `Api/compute.googleapis.com`" in note
    assert "- **Deleted (0):** none" in note
    assert "run `manual__1`" in note


def test_a_teardown_note_says_nothing_was_verified():
    teardown = {**REPORT, "gateway_url": None, "model_reply": None, "served_by_pod": None}
    note = report_markdown({**teardown, "wrong_model_status": None, "created": [], "retried": {}}, "r")
    assert "- **Endpoint:** none (not verified in this run)" in note
    assert "- **Retries:** none" in note
    assert "- **Reply:** none\n" in note
    assert "- **Wrong model:** not checked" in note


def test_a_long_report_still_fits_a_note_with_counts_instead_of_names():
    many = [f"Deployment/default/app-{i:03d}" for i in range(80)]
    note = report_markdown({**REPORT, "found": many, "model_reply": "x" * 5000}, "r")
    assert len(note) <= NOTE_MAX_CHARS
    assert "- **Found:** 80" in note and "app-000" not in note
    assert "| cluster | 301.0 |" in note and "HTTP 404" in note


def test_without_a_connection_the_note_is_left_alone_and_the_log_says_so(caplog):
    log = logging.getLogger("test.report")
    with caplog.at_level(logging.INFO, logger="test.report"):
        assert set_run_note("no_such_airflow_api", "dag", "run", "note", log) is False
    assert [r.getMessage() for r in caplog.records] == [
        "No connection 'no_such_airflow_api': the run report is not written to the run's note."
    ]


def test_an_unreachable_api_is_a_warning_without_the_password(monkeypatch, caplog):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRFLOW_API",
        '{"conn_type": "http", "host": "http://127.0.0.1:9", "login": "reporter", "password": "pw-SECRET-1"}',
    )
    log = logging.getLogger("test.report")
    with caplog.at_level(logging.INFO, logger="test.report"):
        assert set_run_note("airflow_api", "dag", "run", "note", log) is False
    assert "Could not write the run's note" in caplog.text
    assert "pw-SECRET-1" not in caplog.text


@pytest.mark.parametrize("length", [NOTE_MAX_CHARS, NOTE_MAX_CHARS + 1])
def test_note_limit_is_airflows(length):
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunPatchBody
    from pydantic import ValidationError

    if length <= NOTE_MAX_CHARS:
        DAGRunPatchBody(note="x" * length)
    else:
        with pytest.raises(ValidationError):
            DAGRunPatchBody(note="x" * length)
