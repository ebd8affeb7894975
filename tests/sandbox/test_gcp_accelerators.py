"""Compute `acceleratorTypes` as Google's own clients (the discovery client, gcloud) read it from the twin."""

from __future__ import annotations

import os
import subprocess

import pytest
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from sandbox.gcp.accelerators import zones_offering
from sandbox.testing import GoogleClients, enable_gke_apis
from tests._tools import needs_tools


@pytest.fixture(scope="module")
def compute(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return discovery.build(
        "compute",
        "v1",
        credentials=clients.credentials,
        client_options={"api_endpoint": sandbox.info["api_endpoint"] + "/compute/v1/"},
        static_discovery=True,
        cache_discovery=False,
    )


@pytest.fixture(scope="module")
def project(sandbox):
    return sandbox.info["project_id"]


def test_zones_offering_reads_the_table():
    assert zones_offering("us-central1", "nvidia-l4") == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert zones_offering("us-west1", "nvidia-tesla-a100") == ["us-west1-b"]
    assert zones_offering("southamerica-west1", "nvidia-l4") == []
    assert zones_offering("us-moon1", "nvidia-l4") == []


def test_list_in_a_zone_answers_the_schema_fields(compute, project):
    answer = compute.acceleratorTypes().list(project=project, zone="us-central1-a").execute()
    assert answer["kind"] == "compute#acceleratorTypeList"
    l4 = next(item for item in answer["items"] if item["name"] == "nvidia-l4")
    assert l4 == {
        "kind": "compute#acceleratorType",
        "id": l4["id"],
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": "nvidia-l4",
        "description": "NVIDIA L4",
        "zone": f"https://www.googleapis.com/compute/v1/projects/{project}/zones/us-central1-a",
        "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/zones/us-central1-a/acceleratorTypes/nvidia-l4",
        "maximumCardsPerInstance": 8,
    }
    assert l4["id"].isdigit()


def test_list_filters_and_pages_as_compute_does(compute, project):
    request = compute.acceleratorTypes().list(project=project, zone="us-west1-a", filter='name = "nvidia-l4"')
    assert [item["name"] for item in request.execute()["items"]] == ["nvidia-l4"]
    regex = compute.acceleratorTypes().list(project=project, zone="us-west1-a", filter="name eq nvidia-l4.*")
    assert [item["name"] for item in regex.execute()["items"]] == ["nvidia-l4", "nvidia-l4-vws"]

    names, request = [], compute.acceleratorTypes().list(project=project, zone="us-west1-a", maxResults=3)
    pages = 0
    while request is not None:
        answer = request.execute()
        pages += 1
        names += [item["name"] for item in answer.get("items", [])]
        request = compute.acceleratorTypes().list_next(request, answer)
    assert pages == 3
    assert names == sorted(names) and len(names) == 8


def test_a_zone_without_gpus_lists_nothing_and_get_answers_404(compute, project):
    answer = compute.acceleratorTypes().list(project=project, zone="southamerica-west1-a").execute()
    assert "items" not in answer
    with pytest.raises(HttpError) as raised:
        compute.acceleratorTypes().get(
            project=project, zone="us-central1-f", acceleratorType="nvidia-l4"
        ).execute()
    assert raised.value.resp.status == 404
    got = compute.acceleratorTypes().get(
        project=project, zone="us-central1-f", acceleratorType="nvidia-tesla-a100"
    )
    assert got.execute()["maximumCardsPerInstance"] == 16


def test_an_unknown_zone_is_not_found(compute, project):
    with pytest.raises(HttpError) as raised:
        compute.acceleratorTypes().list(project=project, zone="us-central1-z").execute()
    assert raised.value.resp.status == 404


def test_aggregated_list_keys_zones_and_warns_for_empty_ones(compute, project):
    answer = (
        compute.acceleratorTypes()
        .aggregatedList(project=project, filter='name = "nvidia-a100-80gb"')
        .execute()
    )
    assert answer["kind"] == "compute#acceleratorTypeAggregatedList"
    offering = sorted(scope for scope, scoped in answer["items"].items() if "acceleratorTypes" in scoped)
    assert offering == ["zones/us-central1-a", "zones/us-central1-c"]
    empty = answer["items"]["zones/us-west1-c"]
    assert empty == {
        "warning": {
            "code": "NO_RESULTS_ON_PAGE",
            "message": "There are no results for scope 'zones/us-west1-c' on this page.",
            "data": [{"key": "scope", "value": "zones/us-west1-c"}],
        }
    }


def test_accelerator_types_need_a_valid_token(sandbox, project):
    import httpx

    answer = httpx.get(
        f"{sandbox.info['api_endpoint']}/compute/v1/projects/{project}/aggregated/acceleratorTypes",
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert answer.status_code == 401


@needs_tools("gcloud")
def test_gcloud_lists_accelerator_types_by_zone(sandbox, compute, project, tmp_path):
    token_file = tmp_path / "access-token"
    token_file.write_text(sandbox.info["access_token"])
    token_file.chmod(0o600)
    (tmp_path / "active_config").write_text("default")
    (tmp_path / "configurations").mkdir()
    (tmp_path / "configurations" / "config_default").write_text(
        f"[auth]\ndisable_credentials = false\naccess_token_file = {token_file}\n\n"
        f"[api_endpoint_overrides]\ncompute = {sandbox.info['api_endpoint']}/compute/v1/\n\n"
        f"[core]\nproject = {project}\n"
    )
    environment = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    completed = subprocess.run(
        [
            "gcloud",
            "compute",
            "accelerator-types",
            "list",
            "--filter=zone:( us-west1-a us-west1-c )",
            "--format=csv[no-heading](name,zone)",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    rows = completed.stdout.split()
    assert "nvidia-l4,us-west1-c" in rows and "nvidia-h100-80gb,us-west1-a" in rows
    assert not any(row.endswith("us-west1-b") for row in rows)
    assert len(rows) == 10
