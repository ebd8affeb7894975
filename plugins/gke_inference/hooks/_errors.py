"""Errors raised by our hooks, and the split between terminal and transient failures.

Operators turn terminal errors into ``AirflowFailException`` (no retry, a message that names the
cause and the tutorial step); everything else is raised as is so that Airflow retries the task.

Operators import this module when the DAG file is parsed, so the Google libraries are imported
only inside the functions that inspect their errors.
"""

from __future__ import annotations

# 400 invalid request, 401 bad credentials, 403 permission or disabled API, 412 failed precondition.
TERMINAL_HTTP_STATUSES = frozenset({400, 401, 403, 412})


class OperationFailedError(RuntimeError):
    """A long-running operation finished (DONE) with an error."""

    def __init__(self, description: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"{description} failed: {message}")
        self.http_status = http_status


class OperationTimeoutError(TimeoutError):
    """A long-running operation was still running when our wait ran out; retrying may finish it."""


class ResourceMismatchError(RuntimeError):
    """A resource exists under the expected name but not in the shape the DAG needs."""


class MissingResourceError(RuntimeError):
    """A resource the DAG must not create (it was declared pre-existing) is absent."""


class InvalidInputError(ValueError):
    """A task argument is unusable (e.g. an unknown release channel)."""


class MissingProjectError(InvalidInputError):
    """Neither the task nor the connection names a GCP project."""


def is_terminal(exc: BaseException) -> bool:
    """True when retrying the task cannot help: fix the input, permissions or project first."""
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    from gke_inference.hooks._retry import TRANSIENT_HTTP_STATUSES, http_status_of

    if isinstance(exc, OperationFailedError):
        return exc.http_status not in TRANSIENT_HTTP_STATUSES
    if isinstance(exc, ResourceMismatchError | MissingResourceError | InvalidInputError):
        return True
    if isinstance(exc, google.auth.exceptions.RefreshError) and not exc.retryable:
        return True
    return (
        isinstance(exc, api_exceptions.GoogleAPICallError) and http_status_of(exc) in TERMINAL_HTTP_STATUSES
    )


def explain(exc: BaseException) -> str:
    """A sentence about an error, for a task failure message. Never includes credentials."""
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        if exc.reason == "SERVICE_DISABLED":
            service = (exc.metadata or {}).get("service", "a required API")
            return f"{service} is disabled in the project (SERVICE_DISABLED): {exc.message}"
        return f"HTTP {exc.code} {type(exc).__name__}: {exc.message}"
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return "the GCP credentials were rejected when fetching an access token"
    return str(exc)
