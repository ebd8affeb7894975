"""The pure helpers over Kubernetes objects as dicts (gke_inference.kube_objects): references,
conditions, label selectors; importing them loads no Kubernetes or Google client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gke_inference.kube_objects import condition_status, find_condition, format_label_selector, object_ref
from gke_inference.results import summarize


def test_label_selector_formatting():
    assert format_label_selector({"app": "x", "tier": "y"}) == "app=x,tier=y"
    assert format_label_selector("app=x") == "app=x"
    assert format_label_selector({}) is None
    assert format_label_selector(None) is None


@pytest.mark.parametrize(
    ("obj", "ref"),
    [
        ({"kind": "Gateway", "metadata": {"namespace": "ns", "name": "g"}}, "Gateway/ns/g"),
        ({"kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}}, "CustomResourceDefinition/a.b"),
        ({}, "?/?"),
    ],
)
def test_object_ref_names_kind_namespace_and_name(obj, ref):
    assert object_ref(obj) == ref


def test_conditions_are_read_by_type():
    gateway = {
        "status": {
            "conditions": [
                {"type": "Accepted", "status": "True"},
                {"type": "Programmed", "status": "False", "reason": "Pending"},
            ]
        }
    }
    assert find_condition(gateway, "Programmed")["reason"] == "Pending"
    assert condition_status(gateway, "Accepted") == "True"
    assert condition_status(gateway, "Ready") is None
    assert condition_status({"status": None}, "Ready") is None


class _Outcome:
    def __init__(self, action: str, ref: str) -> None:
        self.action, self.ref = action, ref


def test_summarize_groups_refs_by_outcome_in_order():
    outcomes = [_Outcome("created", "A/a"), _Outcome("unchanged", "B/b"), _Outcome("created", "C/c")]
    assert summarize(outcomes) == {"created": ["A/a", "C/c"], "unchanged": ["B/b"]}
    with pytest.raises(ValueError, match="exploded"):
        summarize([_Outcome("exploded", "D/d")])


def test_importing_the_helpers_loads_no_client_library():
    code = (
        "import sys, gke_inference.kube_objects, gke_inference.ownership, gke_inference.results;"
        "print(sorted(m for m in ('kubernetes', 'google.auth', 'airflow') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
