"""Hugging Face Hub: may the connection's token read a model's files?

``HfApi.model_info`` answers 200 for a gated model whether or not the token was granted access
(only the files are gated), so the check is ``HfApi.auth_check`` (GET /api/models/{id}/auth-check),
which the Hub answers 403 GatedRepo until the access request is accepted.

The connection's password is the token; its optional extra ``endpoint`` points the client at
another Hub (e.g. a local twin), as ``api_endpoint`` does for the Google hooks, and its optional
extra ``request_timeout`` (seconds, 30 by default) bounds the request. Errors raised here
name the connection and the model, never the token.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from gke_inference.hooks._base import parse_request_timeout
from gke_inference.hooks._errors import InvalidInputError

HUB_URL = "https://huggingface.co"
# The Hub's X-Error-Message for a token it does not know (huggingface_hub/utils/_http.py).
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"


class HubTokenError(InvalidInputError):
    """The token cannot read the model: fixing the connection or the access request is needed."""


def hub_token(hf_conn_id: str) -> tuple[str, Any]:
    """The connection's token (masked in logs from now on) and the connection; ``HubTokenError``
    naming the connection when it does not exist or has no password."""
    try:
        connection = BaseHook.get_connection(hf_conn_id)
    except AirflowNotFoundException:
        raise HubTokenError(
            f"Airflow connection {hf_conn_id!r} does not exist; create it with a Hugging Face "
            "token as its password (tutorial 3.2)"
        ) from None
    token = (connection.password or "").strip()
    if not token:
        raise HubTokenError(
            f"Airflow connection {hf_conn_id!r} has no password; set it to a Hugging Face token "
            "with access to the model (tutorial 3.2)"
        )
    mask_secret(token)
    return token, connection


class HuggingFaceHubHook(BaseHook):
    """Check a token's read access to a model on the Hugging Face Hub."""

    conn_name_attr = "hf_conn_id"
    default_conn_name = "huggingface_default"
    conn_type = "generic"
    hook_name = "Hugging Face Hub"

    def __init__(self, hf_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hf_conn_id = hf_conn_id

    def check_read_access(self, model: str) -> None:
        """Return when the token may download ``model``; raise ``HubTokenError`` when it may not
        (bad token, gated model without access, no such model). Anything else (5xx, 429, a reset)
        propagates for a retry."""
        from huggingface_hub import constants
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        token, connection = hub_token(self.hf_conn_id)
        extras = connection.extra_dejson or {}
        timeout = parse_request_timeout(extras.get("request_timeout"), self.hf_conn_id)
        # Talk to the configured endpoint only: with telemetry on, huggingface_hub first fetches an
        # "agent harnesses" list from huggingface.co (or HF_ENDPOINT) whatever the HfApi endpoint
        # (huggingface_hub/utils/_detect_agent.py). Same switch as the HF_HUB_DISABLE_TELEMETRY variable.
        constants.HF_HUB_DISABLE_TELEMETRY = True
        try:
            _auth_check(extras.get("endpoint") or constants.ENDPOINT, token, model, timeout)
        except GatedRepoError as exc:
            raise HubTokenError(
                f"The token of connection {self.hf_conn_id!r} has no access to the gated model {model!r} "
                f"(HTTP {exc.response.status_code}): request access on {HUB_URL}/{model} with the token's "
                "account and wait for it to be granted"
            ) from None
        except RepositoryNotFoundError as exc:
            raise HubTokenError(
                f"The Hugging Face Hub has no model {model!r} readable with the token of connection "
                f"{self.hf_conn_id!r} (HTTP {exc.response.status_code}); check the model_name param"
            ) from None
        except HfHubHTTPError as exc:
            if exc.response.status_code == 401:
                raise HubTokenError(
                    f"The Hugging Face Hub refused the token of connection {self.hf_conn_id!r} (HTTP 401: "
                    f"{exc.response.headers.get('X-Error-Message') or 'unauthorized'}); set a valid token "
                    "as its password"
                ) from None
            if exc.response.status_code in (400, 403, 404):
                raise HubTokenError(
                    f"The Hugging Face Hub refused to check {model!r} for connection {self.hf_conn_id!r} "
                    f"(HTTP {exc.response.status_code}: {exc.response.headers.get('X-Error-Message') or ''})"
                ) from None
            raise


def _auth_check(endpoint: str, token: str, model: str, timeout: float) -> None:
    """``HfApi.auth_check`` with a timeout: the library's own call has none (its client's default
    timeout is None, huggingface_hub/utils/_http.py), so a stalled Hub would hold the task forever."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().get(
        f"{endpoint.rstrip('/')}/api/models/{model}/auth-check",
        headers=build_hf_headers(token=token),
        timeout=timeout,
    )
    hf_raise_for_status(response)
