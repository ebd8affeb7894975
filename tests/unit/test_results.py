"""Every task returns one result shape (gke_inference.results); the run report is a fold over them."""

from __future__ import annotations

import pytest

from gke_inference.results import CREATED, UNCHANGED, fold, gcp_ref, one, result

FIRST_RUN = [
    result(created=["Api/container.googleapis.com"], unchanged=["Api/compute.googleapis.com"]),
    one(CREATED, "Network/inference-vpc", self_link="https://compute/networks/inference-vpc"),
    one(UNCHANGED, "Cluster/us-central1/lab", status="RUNNING"),
    result(created=["CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io"]),
    result(created=["Gateway/default/inference-gateway"], unchanged=["HTTPRoute/default/r"]),
    {"status": 200, "reply": "hi", "pod": "vllm-0"},  # a check touches nothing
    None,  # a skipped task
    "not a dict",
]
RERUN = [
    result(unchanged=["Api/compute.googleapis.com", "Api/container.googleapis.com"]),
    one(UNCHANGED, "Network/inference-vpc"),
    one(UNCHANGED, "Cluster/us-central1/lab"),
    result(unchanged=["CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io"]),
    result(updated=["Gateway/default/inference-gateway"], unchanged=["HTTPRoute/default/r"]),
]


def test_a_first_run_folds_into_what_it_created_and_what_was_there():
    outcomes = fold(FIRST_RUN)
    assert outcomes["created"] == [
        "Api/container.googleapis.com",
        "CustomResourceDefinition/inferenceobjectives.inference.networking.x-k8s.io",
        "Gateway/default/inference-gateway",
        "Network/inference-vpc",
    ]
    assert outcomes["unchanged"] == [
        "Api/compute.googleapis.com",
        "Cluster/us-central1/lab",
        "HTTPRoute/default/r",
    ]
    assert outcomes["deleted"] == outcomes["absent"] == []


def test_a_rerun_touches_everything_the_first_run_did_and_creates_nothing():
    first, again = fold(FIRST_RUN), fold(RERUN)
    assert again["created"] == []
    assert set(again["updated"]) | set(again["unchanged"]) == set(first["created"]) | set(first["unchanged"])


def test_an_object_created_then_applied_again_by_a_later_task_counts_as_created_only():
    outcomes = fold(
        [
            result(created=["HTTPRoute/default/llm-route"]),
            result(updated=["HTTPRoute/default/llm-route"]),
            result(unchanged=["HTTPRoute/default/llm-route"]),
        ]
    )
    assert outcomes["created"] == ["HTTPRoute/default/llm-route"]
    assert outcomes["updated"] == outcomes["unchanged"] == []


def test_empty_outcomes_are_left_out_and_details_kept():
    assert result(deleted=["Cluster/r/c"], reason="deleted") == {
        "deleted": ["Cluster/r/c"],
        "reason": "deleted",
    }
    assert gcp_ref("Subnetwork", "us-central1", "proxy") == "Subnetwork/us-central1/proxy"


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="outcome must be one of"):
        one("made", "Network/x")
