"""The IAM Service Account Credentials API: generateAccessToken, for service-account impersonation.

    POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken
    {"delegates": [...], "scope": [...], "lifetime": "3600s"} -> {"accessToken", "expireTime"}

https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken
This is what google-auth's impersonated_credentials.Credentials posts (google/auth/impersonated_credentials.py,
``_make_iam_token_request``: the URL of google/auth/iam.py ``_IAM_ENDPOINT``, or ``iam_endpoint_override``
whole; the body with delegates as the caller gave them, usually bare e-mails; it reads only
``accessToken`` and ``expireTime`` in the form "%Y-%m-%dT%H:%M:%SZ", and any other status than 200 is
a RefreshError "Unable to acquire impersonated credentials" carrying the response body).

Who may impersonate whom: Google requires the caller to hold roles/iam.serviceAccountTokenCreator
(permission iam.serviceAccounts.getAccessToken) on the target account, and each delegate on the
next (https://cloud.google.com/iam/docs/create-short-lived-credentials-direct and
https://cloud.google.com/iam/docs/create-short-lived-credentials-delegated). The twin grants its
key's service account that role on every ``*@<project>.iam.gserviceaccount.com`` of the twin's
projects, except the accounts in ``TokenAuthority.impersonation_refused``. A refusal is Google's
403, whose message does not say whether the account exists ("or it may not exist"; as reported in
google-github-actions/auth#340).
"""

from __future__ import annotations

import datetime
import json
import re

from aiohttp import web

from sandbox.gcp.errors import GcpError, bad_request
from sandbox.gcp.hosts import IamCredentialsHost

GENERATE_ACCESS_TOKEN_PATH = "/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$"
)
_DELEGATE_PREFIX = "projects/-/serviceAccounts/"
_LIFETIME = re.compile(r"^(?P<seconds>\d+)(\.\d+)?s$")
# "The default is one hour (3600s)"; longer, up to 12 h, only under the
# iam.allowServiceAccountCredentialLifetimeExtension org policy (the API reference above).
MAX_LIFETIME = 3600


def permission_denied() -> GcpError:
    return GcpError(
        403,
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": "iam.serviceAccounts.getAccessToken"},
            }
        ],
    )


class IamCredentialsApi:
    def __init__(self, sandbox: IamCredentialsHost) -> None:
        self._sandbox = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(
                GENERATE_ACCESS_TOKEN_PATH.replace("{email}", "{email:[^/:]+}"), self.generate_access_token
            )
        ]

    async def generate_access_token(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        scope = body.get("scope")
        if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
            raise bad_request(
                "Request contains an invalid argument: scope must name at least one OAuth scope."
            )
        lifetime = _lifetime_seconds(body.get("lifetime", f"{MAX_LIFETIME}s"))
        delegates = body.get("delegates") or []
        if not isinstance(delegates, list):
            raise bad_request("Request contains an invalid argument: delegates must be a list.")
        for account in [*map(_delegate_email, delegates), request.match_info["email"]]:
            self._check_token_creator(account)
        tokens = self._sandbox.tokens
        # A compressed test lifetime (TokenAuthority.lifetime) bounds impersonated tokens as well.
        token = tokens.mint(lifetime=min(lifetime, tokens.lifetime), principal=request.match_info["email"])
        expire_time = datetime.datetime.fromtimestamp(tokens.expiry(token), datetime.UTC)
        return web.json_response(
            {"accessToken": token, "expireTime": expire_time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )

    def _check_token_creator(self, account: str) -> None:
        match = _SERVICE_ACCOUNT.match(account)
        if (
            match is None
            or match["project"] not in self._sandbox.gcp.projects
            or account in self._sandbox.tokens.impersonation_refused
        ):
            raise permission_denied()


async def _json_body(request: web.Request) -> dict:
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError:
        raise bad_request("Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise bad_request("Invalid JSON payload received.")
    return body


def _delegate_email(delegate: object) -> str:
    """The API documents "projects/-/serviceAccounts/{ACCOUNT_EMAIL_OR_UNIQUEID}"; google-auth passes
    the provider's chain as bare e-mails, which the twin accepts too."""
    if not isinstance(delegate, str):
        raise bad_request("Request contains an invalid argument: a delegate must be a string.")
    return delegate.removeprefix(_DELEGATE_PREFIX)


def _lifetime_seconds(raw: object) -> int:
    match = _LIFETIME.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise bad_request(
            f"Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), {raw!r}"
        )
    seconds = int(match["seconds"])
    if not 1 <= seconds <= MAX_LIFETIME:
        raise bad_request(
            f"Request contains an invalid argument: lifetime must be between 1s and {MAX_LIFETIME}s."
        )
    return seconds
