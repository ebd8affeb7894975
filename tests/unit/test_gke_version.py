"""GKE version parsing and the tutorial's CRD threshold (2.2)."""

from __future__ import annotations

import pytest

from gke_inference.gke_version import MANAGED_INFERENCE_POOL_SINCE, GKEVersion, serves_inference_pool_crd


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.33.5-gke.1000000", "1.34.0-gke.1000000"),
        ("1.34.0-gke.1625999", "1.34.0-gke.1626000"),
        ("1.34.0-gke.1626000", "1.34.0-gke.1626001"),
        ("1.34.0-gke.1626000", "1.34.1-gke.1000"),
        ("1.9.9-gke.9", "1.10.0-gke.1"),  # numeric, not lexicographic
        ("1.34", "1.34.0-gke.1"),
        ("v1.32.3-gke.1", "1.32.3-gke.2"),
    ],
)
def test_ordering(older, newer):
    assert GKEVersion.parse(older) < GKEVersion.parse(newer)
    assert GKEVersion.parse(newer) > GKEVersion.parse(older)


def test_equal_versions_compare_equal():
    assert GKEVersion.parse("v1.34.0-gke.1626000") == GKEVersion.parse("1.34.0-gke.1626000")
    assert str(GKEVersion.parse("1.34.0-gke.1626000")) == "1.34.0-gke.1626000"


@pytest.mark.parametrize(
    ("version", "served"),
    [
        ("1.33.5-gke.1162000", False),
        ("1.34.0-gke.1625999", False),
        (MANAGED_INFERENCE_POOL_SINCE, True),
        ("1.34.0-gke.1626001", True),
        ("1.34.1-gke.1000000", True),
        ("1.35.0-gke.1", True),
    ],
)
def test_crd_threshold(version, served):
    assert serves_inference_pool_crd(version) is served


@pytest.mark.parametrize("text", ["", "latest", "1", "1.34.0-gke", "1.34.0-gke.x", "1.34.0.1", None])
def test_rejects_what_is_not_a_version(text):
    with pytest.raises(ValueError, match="not a GKE version"):
        GKEVersion.parse(text)
