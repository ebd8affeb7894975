"""Ownership marks per environment: each DAG owns its own objects, and none owns another's."""

from __future__ import annotations

import pytest

from gke_inference.ownership import DEFAULT_OWNER, Owner, environment_dag_id

STAGING, WEEKLY = Owner("staging"), Owner("weekly")


@pytest.mark.parametrize(
    ("dag_id", "environment"),
    [
        ("gke_inference_gateway", None),
        ("gke_inference_gateway__staging", "staging"),
        ("gke_inference_gateway__", None),  # no name after the separator
        ("other_dag__staging", None),
        ("adhoc_platform", None),  # an operator outside any DAG
        (None, None),
    ],
)
def test_the_owner_is_read_from_the_dag_id(dag_id, environment):
    assert Owner.of_dag(dag_id) == Owner(environment)


def test_dag_id_and_owner_round_trip():
    assert Owner.of_dag(environment_dag_id("staging")) == STAGING
    assert Owner.of_dag(environment_dag_id(None)) == DEFAULT_OWNER


def test_marks_carry_the_environment():
    assert STAGING.gcp_labels == {
        "managed-by": "airflow-gke-inference-gateway",
        "airflow-environment": "staging",
    }
    assert STAGING.k8s_labels == {
        "app.kubernetes.io/managed-by": "airflow-gke-inference-gateway",
        "airflow-environment": "staging",
    }
    assert STAGING.network_description == "Managed by Airflow DAG gke_inference_gateway__staging"
    # The marks objects carried before environments existed stay those of the DAG of no environment.
    assert DEFAULT_OWNER.gcp_labels == {"managed-by": "airflow-gke-inference-gateway"}
    assert DEFAULT_OWNER.network_description == "Managed by Airflow DAG gke_inference_gateway"


@pytest.mark.parametrize("owner", [DEFAULT_OWNER, STAGING, WEEKLY])
def test_each_owner_owns_its_own_marks_and_no_one_elses(owner):
    for other in (DEFAULT_OWNER, STAGING, WEEKLY):
        mine = other == owner
        assert owner.owns_gcp_labels(other.gcp_labels) is mine
        assert owner.owns_network_description(other.network_description) is mine
        assert owner.owns_k8s_object({"metadata": {"labels": other.k8s_labels}}) is mine


def test_no_owner_owns_what_carries_no_mark_or_a_longer_description():
    for owner in (DEFAULT_OWNER, STAGING):
        assert not owner.owns_gcp_labels(None)
        assert not owner.owns_gcp_labels({"airflow-environment": owner.environment or ""})
        assert not owner.owns_network_description(None)
        assert not owner.owns_k8s_object({"metadata": {}})
    # The default description is a prefix of every environment's: only an exact match owns.
    assert not DEFAULT_OWNER.owns_network_description(DEFAULT_OWNER.network_description + "__staging")
