"""The one error policy: whether an error is transient (Airflow retries) or terminal (fail now).

``classify`` decides for every error this package meets: Google API errors (SERVICE_DISABLED
included), google-auth's RefreshError, our hooks' errors, Kubernetes API errors and the gateway's
HTTP answers. ``failing_fast`` is the one translator operators and sensors use: a terminal error
becomes ``AirflowFailException("<what> failed: <cause>")``, anything else is re-raised as is.

Imported when the DAG file is parsed, so the client libraries are imported only inside functions.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

from airflow.sdk.exceptions import AirflowFailException

# Answers worth asking again, from every API and from the gateway: rate limits and server errors.
TRANSIENT_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers no retry will change, per API family.
TERMINAL_HTTP_STATUSES: dict[str, frozenset[int]] = {
    # 400 invalid request, 401 bad credentials, 403 permission or disabled API, 412 failed precondition.
    "google": frozenset({400, 401, 403, 412}),
    # The object or request is wrong (400, 422), credentials refused even after a fresh token (401) or
    # lacking permission (403), or what the object lives in does not exist (404: namespace, or kind).
    "kubernetes": frozenset({400, 401, 403, 404, 422}),
}


@dataclass(frozen=True)
class Classified:
    """The verdict on one error; ``cause`` is a sentence for a failure message, never a secret."""

    terminal: bool
    cause: str


def classify(exc: BaseException) -> Classified:
    """Terminal when retrying the task cannot help (fix the input, permissions or project first)."""
    return Classified(_is_terminal(exc), explain(exc))


def is_terminal(exc: BaseException) -> bool:
    return classify(exc).terminal


def is_service_disabled(exc: BaseException) -> bool:
    """The API a call needs is not enabled in the project (so it holds no resources)."""
    from google.api_core import exceptions as api_exceptions

    return isinstance(exc, api_exceptions.GoogleAPICallError) and exc.reason == "SERVICE_DISABLED"


def is_transient_status(status: int) -> bool:
    """An HTTP answer (from an API or the gateway) that may change on a later attempt."""
    return status in TRANSIENT_HTTP_STATUSES


def _is_terminal(exc: BaseException) -> bool:
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    from gke_inference.hooks._errors import (
        InvalidInputError,
        MissingResourceError,
        OperationFailedError,
        ResourceMismatchError,
    )
    from gke_inference.hooks._retry import http_status_of, is_kubernetes_api_error

    if isinstance(exc, OperationFailedError):
        return exc.http_status not in TRANSIENT_HTTP_STATUSES
    if isinstance(exc, ResourceMismatchError | MissingResourceError | InvalidInputError):
        return True  # CredentialsRefusedError is an InvalidInputError
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return not exc.retryable
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return http_status_of(exc) in TERMINAL_HTTP_STATUSES["google"]
    if _is_kubernetes_apply_error(exc):
        return exc.http_status in TERMINAL_HTTP_STATUSES["kubernetes"]  # type: ignore[attr-defined]
    if is_kubernetes_api_error(exc):
        return http_status_of(exc) in TERMINAL_HTTP_STATUSES["kubernetes"]
    return False


def _is_kubernetes_apply_error(exc: BaseException) -> bool:
    import sys

    # Looked up, not imported: the hook loads the Kubernetes client; if it is not loaded, no error came from it.
    module = sys.modules.get("gke_inference.hooks.kubernetes")
    return module is not None and isinstance(exc, module.KubernetesApplyError)


def explain(exc: BaseException) -> str:
    """A sentence about an error, for a task failure message. Never includes credentials."""
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        if is_service_disabled(exc):
            service = (exc.metadata or {}).get("service", "a required API")
            return f"{service} is disabled in the project (SERVICE_DISABLED): {exc.message}"
        return f"HTTP {exc.code} {type(exc).__name__}: {exc.message}"
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return "the GCP credentials were rejected when fetching an access token"
    if not _is_kubernetes_apply_error(exc):
        from gke_inference.hooks._retry import describe_error, is_kubernetes_api_error

        if is_kubernetes_api_error(exc):
            return describe_error(exc)
    return str(exc)


def failure(what: str, cause: str) -> AirflowFailException:
    """The one shape of a task failure: "Creating the VPC (tutorial 1.3) failed: <cause>"."""
    return AirflowFailException(f"{what} failed: {cause}")


@contextmanager
def failing_fast(what: str) -> Generator[None, None, None]:
    """Terminal errors inside become ``failure(what, cause)``; transient ones propagate (Airflow retries).

    :param what: the action and its tutorial step, e.g. "Creating the VPC (tutorial 1.3)".
    """
    try:
        yield
    except AirflowFailException:
        raise
    except Exception as exc:
        verdict = classify(exc)
        if verdict.terminal:
            raise failure(what, verdict.cause) from exc
        raise
