"""The IAM Credentials twin: generateAccessToken as google-auth's impersonated credentials use it."""

from __future__ import annotations

import datetime
import uuid

import httpx
import pytest
from google.auth import exceptions as auth_exceptions
from google.auth import impersonated_credentials
from google.auth.transport.requests import Request

from sandbox.testing import GoogleClients, enable_gke_apis

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@pytest.fixture(scope="module")
def google(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


def account(sandbox, name: str = "deployer") -> str:
    return f"{name}@{sandbox.info['project_id']}.iam.gserviceaccount.com"


def token_url(sandbox, email: str) -> str:
    return f"{sandbox.info['api_endpoint']}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"


def impersonated(sandbox, google, target: str, delegates=None) -> impersonated_credentials.Credentials:
    return impersonated_credentials.Credentials(
        source_credentials=google.credentials,
        target_principal=target,
        delegates=delegates,
        target_scopes=SCOPES,
        iam_endpoint_override=token_url(sandbox, target),
    )


def source_token(google) -> str:
    credentials = google.credentials.with_always_use_jwt_access(False)
    credentials.refresh(Request())
    return credentials.token


def post(sandbox, email: str, body: dict, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(token_url(sandbox, email), json=body, headers=headers)


def test_google_auth_impersonates_and_the_apis_see_the_impersonated_account(sandbox, google):
    target = account(sandbox)
    mark = len(sandbox.requests())
    credentials = impersonated(sandbox, google, target, delegates=[account(sandbox, "hop-one")])
    credentials.refresh(Request())

    assert credentials.token.startswith("ya29.")
    assert credentials.expiry > datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    # a query no other caller sends: the shared twin may serve other tests' leftovers meanwhile
    marker = uuid.uuid4().hex
    response = httpx.get(
        f"{sandbox.info['api_endpoint']}/compute/v1/projects/{sandbox.info['project_id']}/global/networks",
        params={"filter": f'name = "{marker}"'},
        headers={"Authorization": f"Bearer {credentials.token}"},
    )
    assert response.status_code == 200
    entries = sandbox.requests()[mark:]
    minted = [e for e in entries if e["api"] == "iamcredentials"]
    assert [(e["status"], e["principal"]) for e in minted] == [(200, sandbox.sandbox.service_account_email)]
    ours = [e for e in entries if e["api"] == "compute" and marker in e["query"]]
    assert [e["principal"] for e in ours] == [target]


def test_the_body_and_the_answer_have_the_documented_shapes(sandbox, google):
    target = account(sandbox)
    body = {"delegates": [f"projects/-/serviceAccounts/{account(sandbox, 'hop-one')}"], "scope": SCOPES}
    response = post(sandbox, target, {**body, "lifetime": "600s"}, source_token(google))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"accessToken", "expireTime"}
    expire = datetime.datetime.strptime(answer["expireTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    remaining = (expire - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 590 <= remaining <= 601
    assert sandbox.run(sandbox.sandbox.tokens.principal_of, answer["accessToken"]) == target


def test_the_caller_needs_a_valid_token(sandbox):
    for token in (None, "ya29.sandbox.not-minted"):
        response = post(sandbox, account(sandbox), {"scope": SCOPES}, token)
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "where", ["target", "delegate", "another project", "not a service account"], ids=lambda w: w
)
def test_an_account_the_caller_may_not_impersonate_is_403(sandbox, google, where):
    refused = account(sandbox, "refused-sa")
    target = {
        "target": refused,
        "another project": "deployer@not-a-twin-project.iam.gserviceaccount.com",
        "not a service account": "someone@example.com",
    }.get(where, account(sandbox))
    delegates = [refused] if where == "delegate" else []
    sandbox.run(sandbox.sandbox.tokens.impersonation_refused.add, refused)
    try:
        response = post(sandbox, target, {"scope": SCOPES, "delegates": delegates}, source_token(google))
    finally:
        sandbox.run(sandbox.sandbox.tokens.impersonation_refused.discard, refused)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"] == (
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    )
    assert error["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


def test_google_auth_reports_a_refusal_as_a_refresh_error(sandbox, google):
    refused = account(sandbox, "refused-sa")
    sandbox.run(sandbox.sandbox.tokens.impersonation_refused.add, refused)
    try:
        with pytest.raises(auth_exceptions.RefreshError, match="Unable to acquire impersonated credentials"):
            impersonated(sandbox, google, refused).refresh(Request())
    finally:
        sandbox.run(sandbox.sandbox.tokens.impersonation_refused.discard, refused)


@pytest.mark.parametrize(
    "body",
    [{}, {"scope": []}, {"scope": SCOPES, "lifetime": "7200s"}, {"scope": SCOPES, "lifetime": "1h"}],
    ids=["no scope", "empty scope", "lifetime over an hour", "lifetime not a duration"],
)
def test_bad_requests_are_400_and_mint_nothing(sandbox, google, body):
    token = source_token(google)
    before = len(sandbox.run(sandbox.sandbox.tokens.minted))
    response = post(sandbox, account(sandbox), body, token)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(sandbox.run(sandbox.sandbox.tokens.minted)) == before
