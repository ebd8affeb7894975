"""Service Usage v1 through google-cloud-service-usage (REST): enable, batchEnable, get, list, operations."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import service_usage_v1

from sandbox.testing import GoogleClients

TUTORIAL_SERVICES = [
    "compute.googleapis.com",
    "container.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "networkservices.googleapis.com",
    "servicenetworking.googleapis.com",
    "monitoring.googleapis.com",
    "logging.googleapis.com",
]
ENABLED = service_usage_v1.State.ENABLED


@pytest.fixture(scope="module")
def google(sandbox):
    return GoogleClients(sandbox.info)


def _service(google, name: str) -> service_usage_v1.Service:
    return google.service_usage.get_service(request={"name": f"projects/{google.project}/services/{name}"})


def test_enable_returns_an_operation_whose_result_is_the_enabled_service(google):
    operation = google.service_usage.enable_service(
        request={"name": f"projects/{google.project}/services/monitoring.googleapis.com"}
    )
    response = operation.result(timeout=10)
    assert response.service.config.name == "monitoring.googleapis.com"
    assert response.service.state == ENABLED
    assert _service(google, "monitoring.googleapis.com").state == ENABLED


def test_batch_enable_enables_the_tutorial_services(google):
    operation = google.service_usage.batch_enable_services(
        request={"parent": f"projects/{google.project}", "service_ids": TUTORIAL_SERVICES}
    )
    response = operation.result(timeout=10)
    assert [service.config.name for service in response.services] == TUTORIAL_SERVICES
    for name in TUTORIAL_SERVICES:
        service = _service(google, name)
        assert service.state == ENABLED
        assert service.name.endswith(f"/services/{name}") and service.parent.startswith("projects/")


def test_list_filters_by_state(google):
    google.service_usage.batch_enable_services(
        request={"parent": f"projects/{google.project}", "service_ids": ["logging.googleapis.com"]}
    ).result(timeout=10)
    enabled = google.service_usage.list_services(
        request={"parent": f"projects/{google.project}", "filter": "state:ENABLED"}
    )
    names = {service.config.name for service in enabled}
    assert "logging.googleapis.com" in names
    assert all(service.state == ENABLED for service in enabled)


def test_list_is_paged(google):
    parent = f"projects/{google.project}"
    pager = google.service_usage.list_services(request={"parent": parent, "page_size": 2})
    first_page = next(iter(pager.pages))
    assert len(first_page.services) == 2 and first_page.next_page_token
    all_names = [
        service.config.name for service in google.service_usage.list_services(request={"parent": parent})
    ]
    assert [service.config.name for service in pager] == all_names and len(all_names) > 2


def test_a_service_that_is_never_enabled_reads_as_disabled(google):
    assert _service(google, "dataflow.googleapis.com").state == service_usage_v1.State.DISABLED


def test_an_unknown_service_name_is_refused(google):
    with pytest.raises(exceptions.Forbidden, match="Not found or permission denied"):
        google.service_usage.enable_service(
            request={"name": f"projects/{google.project}/services/not a service"}
        )


def test_batch_enable_needs_service_ids(google):
    with pytest.raises(exceptions.BadRequest, match="serviceIds"):
        google.service_usage.batch_enable_services(request={"parent": f"projects/{google.project}"})


def test_another_project_is_not_visible(google):
    with pytest.raises(exceptions.Forbidden, match="Permission denied on resource project"):
        google.service_usage.get_service(
            request={"name": "projects/someone-else/services/compute.googleapis.com"}
        )


def test_an_operation_that_fails_reports_a_google_rpc_status(sandbox, clean_faults, google):
    sandbox.run(
        sandbox.sandbox.faults.add_behaviour,
        "operation_error",
        api="serviceusage",
        resource="networkservices.googleapis.com",
    )
    operation = google.service_usage.enable_service(
        request={"name": f"projects/{google.project}/services/networkservices.googleapis.com"}
    )
    with pytest.raises(exceptions.GoogleAPICallError, match="Quota exceeded"):
        operation.result(timeout=10)


def test_an_unknown_operation_is_not_found(google):
    with pytest.raises(exceptions.NotFound):
        google.service_usage.get_operation(request={"name": "operations/acat.p2-1-does-not-exist"})
