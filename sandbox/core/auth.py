"""Service-account key, OAuth token endpoint and bearer-token checks.

Clients authenticate in two ways, both with the sandbox's service-account key:
google-auth refreshes by POSTing a signed JWT assertion to `/token` and gets an opaque access
token; GAPIC clients instead send a self-signed JWT as the bearer token. The Kubernetes APIs accept
only access tokens minted by `/token` (or by IAM Credentials generateAccessToken for an impersonated
service account, sandbox.gcp.iamcredentials), as GKE accepts only OAuth access tokens. Each minted
token remembers the service account it acts as, which the request log records as "principal".

Google access tokens live one hour (the token response's "expires_in", OAuth 2.0 for server-to-server
applications: https://developers.google.com/identity/protocols/oauth2/service-account), and for a
self-signed JWT "if you are calling a Google API, the exp claim must be set no more than 1 hour in
the future" (IAM docs, quoted in https://github.com/googleapis/google-auth-library-java/pull/516).
`TokenAuthority(lifetime=...)` compresses that hour for tests: minted tokens, and self-signed JWTs
older than the lifetime, are then refused as expired ones are, with 401 (see
sandbox.gcp.errors.unauthenticated and sandbox.kube.status.unauthorized).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ACCESS_TOKEN_LIFETIME = 3600
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Tolerated clock difference when checking iat/exp, as Google's token endpoint does.
_CLOCK_SKEW = 300


class InvalidCredential(Exception):
    """A token or assertion that is not signed by the sandbox's key, or has expired."""


@dataclass(frozen=True)
class ServiceAccountKey:
    project_id: str
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, project_id: str, account: str = "airflow-sandbox") -> ServiceAccountKey:
        return cls(
            project_id=project_id,
            client_email=f"{account}@{project_id}.iam.gserviceaccount.com",
            private_key_id=secrets.token_hex(20),
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    def key_file_json(self, token_uri: str) -> dict:
        """The JSON Google issues for a key, with token_uri pointing at the sandbox."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": str(int(self.private_key_id[:16], 16)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
            + self.client_email.replace("@", "%40"),
        }


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _verified_jwt_claims(token: str, key: ServiceAccountKey) -> dict:
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(payload_b64))
        signature = _b64url_decode(signature_b64)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCredential("malformed JWT") from error
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidCredential("malformed JWT")
    if header.get("alg") != "RS256":
        raise InvalidCredential("JWT must be signed with RS256")
    try:
        key.private_key.public_key().verify(
            signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature as error:
        raise InvalidCredential("JWT signature does not match the service-account key") from error
    if claims.get("iss") != key.client_email:
        raise InvalidCredential("JWT issuer is not the sandbox service account")
    now = time.time()
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - _CLOCK_SKEW:
        raise InvalidCredential("JWT has expired")
    if isinstance(claims.get("iat"), int | float) and claims["iat"] > now + _CLOCK_SKEW:
        raise InvalidCredential("JWT was issued in the future")
    return claims


@dataclass(frozen=True)
class _Grant:
    expiry: float
    principal: str


class TokenAuthority:
    """Mints opaque access tokens and checks bearer tokens.

    :param lifetime: seconds an access token (and a self-signed JWT) is accepted; Google's is 3600.
    """

    def __init__(self, key: ServiceAccountKey, lifetime: float = ACCESS_TOKEN_LIFETIME) -> None:
        if not lifetime >= 1:
            raise ValueError(f"the token lifetime must be at least 1 second, not {lifetime!r}")
        self.key = key
        self.lifetime = lifetime
        self._grants: dict[str, _Grant] = {}
        # Service accounts the key's account may not impersonate (see sandbox.gcp.iamcredentials).
        self.impersonation_refused: set[str] = set()

    def mint(self, lifetime: float | None = None, principal: str | None = None) -> str:
        """A new access token for ``principal`` (the key's own service account by default)."""
        now = time.time()
        self._grants = {t: grant for t, grant in self._grants.items() if grant.expiry > now}
        token = "ya29.sandbox." + secrets.token_urlsafe(32)
        expiry = now + (self.lifetime if lifetime is None else lifetime)
        self._grants[token] = _Grant(expiry, principal or self.key.client_email)
        return token

    def revoke(self, token: str) -> None:
        """Refuse this access token from now on, as Google does after a revocation
        (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke)."""
        self._grants.pop(token, None)

    def is_valid(self, token: str | None) -> bool:
        """True for an unexpired access token minted here (what the Kubernetes APIs accept)."""
        grant = self._grants.get(token or "")
        return grant is not None and grant.expiry > time.time()

    def minted(self) -> list[str]:
        """The access tokens minted here and not yet expired or revoked."""
        return list(self._grants)

    def expiry(self, token: str) -> float:
        """When a minted token stops being accepted (seconds since the epoch)."""
        return self._grants[token].expiry

    def principal_of(self, token: str | None) -> str | None:
        """The service account a valid token acts as: the one it was minted for (an impersonated
        account, see sandbox.gcp.iamcredentials), or the key's own for a self-signed JWT."""
        if self.is_valid(token):
            return self._grants[token or ""].principal
        return self.key.client_email if self.is_valid_for_google_apis(token) else None

    def is_valid_for_google_apis(self, token: str | None) -> bool:
        """Minted access tokens and self-signed JWTs by the service-account key."""
        if self.is_valid(token):
            return True
        if not token or token.count(".") != 2:
            return False
        try:
            claims = _verified_jwt_claims(token, self.key)
        except InvalidCredential:
            return False
        return not self._outlived(claims)

    def _outlived(self, claims: dict) -> bool:
        """A self-signed JWT older than a compressed lifetime (the real hour is checked by "exp")."""
        if self.lifetime >= ACCESS_TOKEN_LIFETIME or not isinstance(claims.get("iat"), int | float):
            return False
        return claims["iat"] + self.lifetime < time.time()

    def exchange_assertion(self, assertion: str, token_uri: str) -> str:
        """Verify a JWT-bearer assertion (RFC 7523) and mint an access token for it."""
        claims = _verified_jwt_claims(assertion, self.key)
        # google-auth addresses assertions to Google's endpoint whatever the key's token_uri says.
        if claims.get("aud") not in (GOOGLE_TOKEN_URI, token_uri):
            raise InvalidCredential("JWT audience is not a token endpoint")
        return self.mint()


# The request key under which authentication leaves the caller's service account, for the request log.
PRINCIPAL_KEY = web.RequestKey("sandbox.principal", str)


def authenticated(request: web.Request, authority: TokenAuthority, *, google_apis: bool) -> bool:
    """Whether the request's bearer token is accepted (by the Google APIs, or by the Kubernetes APIs
    that take minted access tokens only); if so, note whom it acts as in ``request[PRINCIPAL_KEY]``."""
    token = bearer_token(request)
    valid = authority.is_valid_for_google_apis(token) if google_apis else authority.is_valid(token)
    if valid:
        request[PRINCIPAL_KEY] = authority.principal_of(token)
    return valid


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_handler(authority: TokenAuthority):
    """The OAuth 2.0 token endpoint (`POST /token`), answering like oauth2.googleapis.com."""

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error("unsupported_grant_type", "Only the JWT bearer grant is supported.")
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not assertion:
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            token = authority.exchange_assertion(assertion, token_uri=str(request.url.with_query(None)))
        except InvalidCredential as error:
            return _oauth_error("invalid_grant", f"Invalid JWT: {error}")
        return web.json_response(
            {"access_token": token, "expires_in": int(authority.lifetime), "token_type": "Bearer"}
        )

    return handle


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)
