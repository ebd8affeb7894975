"""Fault injection as a client sees it, the request log, and the admin endpoint."""

from __future__ import annotations

import time

import httpx
import pytest
import requests
from google.api_core import exceptions
from google.api_core import retry as retries
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request

from sandbox.testing import GoogleClients, enable_gke_apis, unique_name

NETWORKS_PATH = r"/global/networks/"


@pytest.fixture(scope="module")
def google(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


def get_missing_network(google, **kwargs):
    """A call that normally answers 404, so that any other outcome comes from the fault."""
    return google.networks.get(project=google.project, network=unique_name("absent"), **kwargs)


def test_429_with_retry_after_raises_too_many_requests_then_clears(sandbox, clean_faults, google):
    sandbox.faults_add(api="compute", method="GET", path=NETWORKS_PATH, status=429, retry_after=7, count=1)
    with pytest.raises(exceptions.TooManyRequests) as raised:
        get_missing_network(google)
    assert raised.value.response.headers["Retry-After"] == "7"
    with pytest.raises(exceptions.NotFound):
        get_missing_network(google)


def test_503_is_retried_by_the_client_default_policy(sandbox, clean_faults, google):
    sandbox.faults_add(api="compute", method="GET", path=NETWORKS_PATH, status=503, count=2)
    before = len(sandbox.requests(api="compute"))
    retry = retries.Retry(
        predicate=retries.if_exception_type(exceptions.ServiceUnavailable), initial=0.01, timeout=10
    )
    with pytest.raises(exceptions.NotFound):
        get_missing_network(google, retry=retry)
    statuses = [entry["status"] for entry in sandbox.requests(api="compute")[before:]]
    assert statuses == [503, 503, 404]


def test_a_503_on_cluster_creation_reaches_the_caller(sandbox, clean_faults, google):
    sandbox.faults_add(api="container", method="POST", path=r"/clusters$", status=503)
    with pytest.raises(exceptions.ServiceUnavailable):
        google.clusters.create_cluster(
            request={"parent": f"projects/{google.project}/locations/us-central1", "cluster": {"name": "x"}}
        )


def test_a_dropped_connection_is_a_connection_error(sandbox, clean_faults, google):
    sandbox.faults_add(api="compute", method="GET", path=NETWORKS_PATH, drop=True, count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        get_missing_network(google)
    assert sandbox.requests(api="compute")[-1]["status"] is None


def test_a_delay_beyond_the_client_timeout_times_out(sandbox, clean_faults, google):
    sandbox.faults_add(api="compute", method="GET", path=NETWORKS_PATH, delay=2.0, count=1)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        get_missing_network(google, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_google_auth_retries_a_transient_token_endpoint_failure(sandbox, clean_faults, google):
    sandbox.faults_add(api="oauth", method="POST", path="^/token$", status=503, count=1)
    before = len(sandbox.requests(api="oauth"))
    credentials = google.credentials.with_always_use_jwt_access(False)
    credentials.refresh(Request())
    assert credentials.valid
    assert [entry["status"] for entry in sandbox.requests(api="oauth")[before:]] == [503, 200]


def test_a_refused_token_request_fails_the_credential_refresh(sandbox, clean_faults, google):
    sandbox.faults_add(api="oauth", method="POST", path="^/token$", status=403)
    credentials = google.credentials.with_always_use_jwt_access(False)
    with pytest.raises(auth_exceptions.RefreshError):
        credentials.refresh(Request())


def test_a_rule_matches_only_its_api_method_and_path(sandbox, clean_faults, google):
    sandbox.faults_add(api="compute", method="DELETE", path=NETWORKS_PATH, status=500)
    sandbox.faults_add(api="container", method="GET", path=NETWORKS_PATH, status=500)
    with pytest.raises(exceptions.NotFound):
        get_missing_network(google)


def test_the_request_log_records_calls_without_secrets(sandbox, google):
    with pytest.raises(exceptions.NotFound):
        google.networks.get(project=google.project, network="logged-vpc")
    entry = sandbox.requests(api="compute")[-1]
    assert entry["method"] == "GET" and entry["status"] == 404
    assert entry["path"] == f"/compute/v1/projects/{google.project}/global/networks/logged-vpc"
    # "principal": the service account the token acts as (an account name, not a secret).
    assert set(entry) == {"api", "method", "path", "query", "status", "ts", "principal"}
    assert entry["principal"] == sandbox.sandbox.service_account_email
    everything = repr(sandbox.requests())
    assert sandbox.info["access_token"] not in everything and "Bearer" not in everything


def test_invalid_rules_are_refused(sandbox):
    for rule in (
        {"api": "nope", "status": 500},
        {"api": "compute"},
        {"api": "compute", "status": 42},
        {"api": "compute", "status": 500, "path": "("},
        {"api": "compute", "status": 500, "colour": "red"},
    ):
        with pytest.raises((ValueError, TypeError)):
            sandbox.faults_add(**rule)


class TestAdminEndpoint:
    def test_faults_round_trip_over_http(self, sandbox, clean_faults, google):
        admin = sandbox.info["admin_url"]
        created = httpx.post(f"{admin}/faults", json={"api": "compute", "path": NETWORKS_PATH, "status": 503})
        assert created.status_code == 201 and created.json()["id"] > 0
        assert httpx.get(f"{admin}/faults").json()[0]["status"] == 503
        with pytest.raises(exceptions.ServiceUnavailable):
            get_missing_network(google, retry=None)

        assert httpx.delete(f"{admin}/faults").status_code == 204
        assert httpx.get(f"{admin}/faults").json() == []
        with pytest.raises(exceptions.NotFound):
            get_missing_network(google)

    def test_a_bad_rule_is_a_400_with_the_reason(self, sandbox):
        response = httpx.post(f"{sandbox.info['admin_url']}/faults", json={"api": "compute"})
        assert response.status_code == 400
        assert "at least one of status, delay or drop" in response.json()["error"]

    def test_behaviours_over_http(self, sandbox, clean_faults):
        admin = sandbox.info["admin_url"]
        response = httpx.post(
            f"{admin}/behaviours", json={"name": "cluster_error", "count": 1, "match": {"cluster": "c1"}}
        )
        assert response.status_code == 201
        assert sandbox.run(sandbox.sandbox.faults.behaviour, "cluster_error", cluster="c1", project="p")
        assert not sandbox.run(sandbox.sandbox.faults.behaviour, "cluster_error", cluster="c1", project="p")
        refused = httpx.post(f"{admin}/behaviours", json={"name": "everything_breaks"})
        assert refused.status_code == 400

    def test_requests_can_be_filtered_by_api(self, sandbox, google):
        google.service_usage.get_service(
            request={"name": f"projects/{google.project}/services/compute.googleapis.com"}
        )
        entries = httpx.get(f"{sandbox.info['admin_url']}/requests", params={"api": "serviceusage"}).json()
        assert entries and {entry["api"] for entry in entries} == {"serviceusage"}

    def test_state_shows_what_exists(self, sandbox, google):
        state = httpx.get(f"{sandbox.info['admin_url']}/state").json()
        project = state["projects"][google.project]
        assert "compute.googleapis.com" in project["enabledServices"]
        assert state["profile"] == "instant" and state["gkeVersion"] == sandbox.sandbox.gke_version
