"""Base of our Google hooks: REST clients aimed at the connection's ``api_endpoint``, if any."""

from __future__ import annotations

from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from google.api_core.client_options import ClientOptions
from google.api_core.gapic_v1.client_info import ClientInfo

from gke_inference.hooks._errors import InvalidInputError, MissingProjectError
from gke_inference.hooks._retry import REQUEST_TIMEOUT

CLIENT_INFO = ClientInfo(user_agent="airflow-gke-inference-gateway")

# What a templated "{{ params.project_id }}" renders to when the param is null.
_UNSET_PROJECT_VALUES = frozenset({"", "None", "null"})


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
        if project_id is not None and str(project_id).strip() not in _UNSET_PROJECT_VALUES:
            return str(project_id).strip()
        if self.project_id:
            return self.project_id
        raise MissingProjectError(
            f"No GCP project: set the project_id param or the project of connection {self.gcp_conn_id!r}"
        )


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
