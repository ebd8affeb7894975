"""Bearer tokens: the OAuth endpoint, self-signed JWTs, and 401 for everything else."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth import credentials as auth_credentials
from google.auth import crypt, jwt
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request
from google.cloud import compute_v1
from google.oauth2 import service_account

from sandbox.core.auth import ServiceAccountKey
from sandbox.testing import GoogleClients, enable_gke_apis


@pytest.fixture(scope="module")
def google(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


def _networks_url(info: dict) -> str:
    return f"{info['api_endpoint']}/compute/v1/projects/{info['project_id']}/global/networks"


def test_google_auth_refresh_gets_an_access_token_that_the_apis_accept(sandbox, google):
    credentials = google.credentials.with_always_use_jwt_access(False)
    credentials.refresh(Request())
    assert credentials.token and credentials.expiry is not None
    assert sandbox.run(sandbox.sandbox.tokens.is_valid, credentials.token)

    response = httpx.get(
        _networks_url(sandbox.info), headers={"Authorization": f"Bearer {credentials.token}"}
    )
    assert response.status_code == 200
    assert response.json()["kind"] == "compute#networkList"


def test_gapic_clients_authenticate_with_self_signed_jwts_without_calling_the_token_endpoint(sandbox, google):
    token_calls_before = len(sandbox.requests(api="oauth"))
    GoogleClients(sandbox.info).networks.list(project=google.project)
    assert len(sandbox.requests(api="oauth")) == token_calls_before

    # A self-signed JWT is good for Google APIs but is not an access token: Kubernetes refuses it.
    credentials = google.credentials.with_always_use_jwt_access(True)
    credentials.refresh(Request())
    assert credentials.token.count(".") == 2
    assert sandbox.run(sandbox.sandbox.tokens.is_valid_for_google_apis, credentials.token)
    assert not sandbox.run(sandbox.sandbox.tokens.is_valid, credentials.token)


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_requests_without_a_valid_bearer_token_get_a_google_401(sandbox, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(_networks_url(sandbox.info), headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["code"] == 401


def test_a_client_without_credentials_raises_unauthenticated(sandbox):
    client = compute_v1.NetworksClient(
        credentials=auth_credentials.AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=sandbox.info["api_endpoint"]),
    )
    # On a 401 the transport tries to refresh the credentials, which anonymous ones cannot do.
    with pytest.raises(auth_exceptions.InvalidOperation):
        client.list(project=sandbox.info["project_id"])
    assert sandbox.requests(api="compute")[-1]["status"] == 401


def _foreign_credentials(sandbox) -> service_account.Credentials:
    """Credentials for the sandbox's account name, but signed by a key the sandbox never issued."""
    impostor = ServiceAccountKey.generate(sandbox.info["project_id"])
    key_info = impostor.key_file_json(token_uri=f"{sandbox.info['api_endpoint']}/token")
    return service_account.Credentials.from_service_account_info(
        key_info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )


def test_a_jwt_signed_by_another_key_is_refused(sandbox):
    client = compute_v1.NetworksClient(
        credentials=_foreign_credentials(sandbox),
        client_options=ClientOptions(api_endpoint=sandbox.info["api_endpoint"]),
    )
    with pytest.raises(exceptions.Unauthorized):
        client.list(project=sandbox.info["project_id"])


def test_the_token_endpoint_refuses_an_assertion_signed_by_another_key(sandbox):
    credentials = _foreign_credentials(sandbox).with_always_use_jwt_access(False)
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_grant"):
        credentials.refresh(Request())


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "invalid_request"),
        (
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"},
            "invalid_grant",
        ),
    ],
)
def test_the_token_endpoint_rejects_bad_requests_like_google(sandbox, form, error):
    response = httpx.post(f"{sandbox.info['api_endpoint']}/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error


def _signed_jwt(sandbox, **claims) -> str:
    key_info = json.loads(Path(sandbox.info["key_path"]).read_text())
    signer = crypt.RSASigner.from_service_account_info(key_info)
    now = int(time.time())
    payload = {"iss": key_info["client_email"], "iat": now, "exp": now + 600, **claims}
    return jwt.encode(signer, payload).decode()


def test_the_token_endpoint_checks_the_assertion_audience(sandbox):
    token_url = f"{sandbox.info['api_endpoint']}/token"
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    wrong = _signed_jwt(sandbox, aud="https://example.com/token")
    response = httpx.post(token_url, data={"grant_type": grant, "assertion": wrong})
    assert response.status_code == 400 and "audience" in response.json()["error_description"]

    right = _signed_jwt(sandbox, aud="https://oauth2.googleapis.com/token")
    response = httpx.post(token_url, data={"grant_type": grant, "assertion": right})
    assert response.status_code == 200 and response.json()["expires_in"] == 3600


def test_an_expired_self_signed_jwt_is_refused(sandbox):
    long_ago = int(time.time()) - 7200
    expired = _signed_jwt(sandbox, aud="https://compute.googleapis.com/", iat=long_ago, exp=long_ago + 600)
    response = httpx.get(_networks_url(sandbox.info), headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    fresh = _signed_jwt(sandbox, aud="https://compute.googleapis.com/")
    assert (
        httpx.get(_networks_url(sandbox.info), headers={"Authorization": f"Bearer {fresh}"}).status_code
        == 200
    )
