"""Base of our Google hooks: REST clients aimed at the connection's ``api_endpoint``, if any."""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import google.auth.exceptions
from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.gapic_v1.client_info import ClientInfo
from google.auth import impersonated_credentials
from google.auth.credentials import Credentials

from gke_inference.hooks._errors import InvalidInputError, MissingProjectError
from gke_inference.hooks._retry import REQUEST_TIMEOUT, describe_error

Client = TypeVar("Client")

CLIENT_INFO = ClientInfo(user_agent="airflow-gke-inference-gateway")


class EndpointAwareGoogleHook(GoogleBaseHook):
    """A GoogleBaseHook whose clients use the REST transport and the connection's API endpoint.

    The optional connection extra ``api_endpoint`` (e.g. ``http://127.0.0.1:8080``) points every
    client at that endpoint; without it the clients use Google's own endpoints. The optional extra
    ``request_timeout`` (seconds) bounds each HTTP request, 30 s by default.
    """

    @property
    def api_endpoint(self) -> str | None:
        return self._get_field("api_endpoint") or None

    @property
    def request_timeout(self) -> float:
        """Seconds one HTTP request may take before it is abandoned (and retried if budget is left)."""
        return parse_request_timeout(self._get_field("request_timeout"), self.gcp_conn_id)

    def get_credentials_and_project_id(self) -> tuple[Credentials, str | None]:
        """The provider's credentials; with an impersonation chain and an ``api_endpoint``, the IAM
        Credentials call (generateAccessToken) goes to that endpoint as well."""
        credentials, project_id = super().get_credentials_and_project_id()
        if self.api_endpoint and isinstance(credentials, impersonated_credentials.Credentials):
            # The provider builds the credentials without google-auth's ``iam_endpoint_override``
            # argument (providers/google/cloud/utils/credentials_provider.py); this sets what that
            # argument sets: the full generateAccessToken URL (google/auth/impersonated_credentials.py).
            credentials._iam_endpoint_override = generate_access_token_url(
                self.api_endpoint, credentials.service_account_email
            )
        return credentials, project_id

    def named_client(self, client: Client) -> Client:
        """The client, whose calls fail with ``CredentialsRefusedError`` naming this hook's
        connection when Google refuses its credentials (expired tokens are refreshed before that:
        google-auth refreshes on a 401 and tries once more)."""
        credentials = self.get_credentials()
        return _ConnectionNamingClient(client, self.gcp_conn_id, credentials)  # type: ignore[return-value]

    def client_options(self) -> ClientOptions:
        return self.get_client_options(api_endpoint_override=self.api_endpoint)

    def client_kwargs(self) -> dict:
        """Keyword arguments shared by every generated client this hook builds."""
        return {
            "credentials": self.get_credentials(),
            "client_options": self.client_options(),
            "client_info": CLIENT_INFO,
            "transport": "rest",
        }

    def resolve_project_id(self, project_id: str | None = None) -> str:
        """The given project, else the connection's project; a clear error when neither is set."""
        if project_id:
            return project_id
        if self.project_id:
            return self.project_id
        raise MissingProjectError(
            f"No GCP project: set the project_id param or the project of connection {self.gcp_conn_id!r}"
        )


def generate_access_token_url(api_endpoint: str, service_account: str) -> str:
    """IAM Credentials' generateAccessToken for ``service_account`` at ``api_endpoint``
    (https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken)."""
    return f"{api_endpoint.rstrip('/')}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"


def parse_request_timeout(raw: object, conn_id: str) -> float:
    """The connection's ``request_timeout`` extra as positive seconds; the default when unset."""
    if raw in (None, ""):
        return REQUEST_TIMEOUT
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise InvalidInputError(
            f"Connection {conn_id!r}: request_timeout must be a positive number of seconds, got {raw!r}"
        )
    return seconds


class CredentialsRefusedError(InvalidInputError):
    """Google or the cluster refused the connection's credentials even after a fresh token: a key
    that was deleted or never valid. Terminal; the message names the connection, never the secret."""

    def __init__(self, conn_id: str, where: str, detail: str) -> None:
        super().__init__(
            f"The credentials of connection {conn_id!r} were refused by {where} ({detail}); check the "
            "service-account key in that connection (deleted, disabled or from another project?)"
        )


class ImpersonationRefusedError(InvalidInputError):
    """IAM Credentials refused to mint a token for the impersonated account (403: the connection's
    account lacks roles/iam.serviceAccountTokenCreator on it, or it does not exist). Terminal."""

    def __init__(self, conn_id: str, account: str, detail: str) -> None:
        super().__init__(
            f"Connection {conn_id!r} could not impersonate {account!r} ({detail}); its service account "
            "needs roles/iam.serviceAccountTokenCreator on that account (and on each delegate of the chain)"
        )


def credentials_refused(
    conn_id: str, where: str, exc: BaseException, credentials: Credentials | None = None
) -> CredentialsRefusedError | ImpersonationRefusedError:
    """The terminal error for a refused credential; ``credentials`` tells an impersonation apart."""
    if not isinstance(exc, google.auth.exceptions.RefreshError):
        return CredentialsRefusedError(conn_id, where, describe_error(exc))
    # args[0] is the endpoint's "error: description"; args[1] its body (no secrets either).
    detail = str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(credentials, impersonated_credentials.Credentials) and detail.startswith(
        impersonated_credentials._REFRESH_ERROR
    ):
        return ImpersonationRefusedError(conn_id, credentials.service_account_email, _google_message(exc))
    return CredentialsRefusedError(conn_id, where, detail)


def _google_message(exc: google.auth.exceptions.RefreshError) -> str:
    """The Google error message in a refused IAM Credentials call's body (it holds no token)."""
    try:
        return str(json.loads(exc.args[1])["error"]["message"])
    except (IndexError, TypeError, ValueError, KeyError):
        return str(exc.args[0])


def is_refused_credential(exc: BaseException) -> bool:
    """A 401 from a Google API, or a token endpoint that refused the key (not a retryable 5xx)."""
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return not getattr(exc, "retryable", False)
    return isinstance(exc, api_exceptions.Unauthorized)


class _ConnectionNamingClient:
    """Proxies a generated Google client; see ``EndpointAwareGoogleHook.named_client``."""

    def __init__(self, client: Any, conn_id: str, credentials: Credentials | None = None) -> None:
        self._client = client
        self._conn_id = conn_id
        self._credentials = credentials

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except Exception as exc:
                if is_refused_credential(exc):
                    raise credentials_refused(
                        self._conn_id, "the Google APIs", exc, self._credentials
                    ) from None
                raise

        return call


COMPUTE_V1 = "google.cloud.compute_v1"
if TYPE_CHECKING:
    from google.cloud import compute_v1  # noqa: F401 (the dependency compute_v1_on_demand() stands in for)


def compute_v1_on_demand() -> ModuleType:
    """``google.cloud.compute_v1``, whose clients and types load when first used.

    The package's ``__init__`` imports every one of its ~130 service clients with their REST
    transports: 3.1 s of a task's time on the bench machine, for the four or five clients a task
    uses (types and five clients: 0.75 s). Upstream marks those modules lazy (``__lazy_modules__``
    in google/cloud/compute_v1/__init__.py, PEP 810), which only Python 3.15 honours. The module
    registered here serves ``XxxClient`` from ``services/xxx``, a message type from
    ``types.compute``, and anything else by running the real ``__init__`` once; elsewhere,
    ``from google.cloud import compute_v1`` gets this same module, with the same classes.
    """
    if COMPUTE_V1 in sys.modules:
        return sys.modules[COMPUTE_V1]
    spec = importlib.util.find_spec(COMPUTE_V1)
    module = importlib.util.module_from_spec(spec)
    full_load: list[bool] = []

    def load_attribute(name: str) -> Any:
        if (name.startswith("__") and name not in ("__all__", "__version__")) or full_load:
            raise AttributeError(f"module {COMPUTE_V1!r} has no attribute {name!r}")
        if _is_submodule(spec, name):
            return importlib.import_module(f"{COMPUTE_V1}.{name}")
        service = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Client")).lower()
        if name.endswith("Client") and _is_submodule(spec, f"services/{service}"):
            return getattr(importlib.import_module(f"{COMPUTE_V1}.services.{service}"), name)
        types = importlib.import_module(f"{COMPUTE_V1}.types.compute")
        if hasattr(types, name):
            return getattr(types, name)
        full_load.append(True)
        spec.loader.exec_module(module)
        return module.__dict__[name]

    module.__getattr__ = load_attribute  # type: ignore[method-assign]
    sys.modules[COMPUTE_V1] = module
    importlib.import_module("google.cloud").compute_v1 = module
    return module


def _is_submodule(spec: importlib.machinery.ModuleSpec, relative: str) -> bool:
    return any(
        os.path.isdir(os.path.join(location, relative))
        or os.path.isfile(os.path.join(location, f"{relative}.py"))
        for location in spec.submodule_search_locations or ()
    )
