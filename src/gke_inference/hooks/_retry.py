"""The one retry policy for calls to GCP and Kubernetes APIs.

The generated Google clients retry 503 on some reads but never 429, and never retry creates, so
every call in this package goes through ``DEFAULT_RETRY`` instead: 429, 5xx, dropped connections and
timeouts are retried with jittered exponential backoff within a bounded total time, and a
``Retry-After`` header from the server stretches the next wait. Anything else fails at once.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import google.auth.exceptions
import requests
import urllib3.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, exponential_sleep_generator, retry_target

from gke_inference.errors import TRANSIENT_HTTP_STATUSES

log = logging.getLogger(__name__)

# Per-request timeout handed to every client call (seconds).
REQUEST_TIMEOUT = 30.0
# Total time one logical call may spend retrying (seconds).
RETRY_TIMEOUT = 120.0
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 16.0
MAX_RETRY_AFTER = 60.0

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.TimeoutError,
    google.auth.exceptions.TransportError,
)


def is_kubernetes_api_error(exc: BaseException) -> bool:
    # Looked up, not imported: the kubernetes package is slow to import (it would slow DAG parsing),
    # and if it was never imported, no error can come from it.
    module = sys.modules.get("kubernetes.client.exceptions")
    return module is not None and isinstance(exc, module.ApiException)


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status a Google or Kubernetes client error carries, if any."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code if isinstance(exc.code, int) else None
    if is_kubernetes_api_error(exc):
        return exc.status or None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 429, 5xx, connection resets and timeouts."""
    status = http_status_of(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES
    if isinstance(exc, google.auth.exceptions.RefreshError):
        # The token endpoint answered 429/5xx (google-auth already retried a few times itself).
        return bool(getattr(exc, "retryable", False))
    return isinstance(exc, _CONNECTION_ERRORS)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` (seconds or HTTP date) on an error response, capped."""
    headers = None
    if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.response is not None:
        headers = getattr(exc.response, "headers", None)
    elif is_kubernetes_api_error(exc):
        headers = exc.headers
    raw = headers.get("Retry-After") if headers else None
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def describe_error(exc: BaseException) -> str:
    """A one-line description of an error, safe to log (no request headers, no tokens)."""
    status = http_status_of(exc)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return f"HTTP {status} {type(exc).__name__}: {exc.message}"
    if is_kubernetes_api_error(exc):
        return f"HTTP {status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


class _Backoff(Iterator[float]):
    """Jittered exponential backoff that waits at least as long as the last Retry-After asked."""

    def __init__(self, initial: float, maximum: float, multiplier: float) -> None:
        self._delays = exponential_sleep_generator(initial, maximum, multiplier=multiplier)
        self._last_error: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        self._last_error = exc

    def __next__(self) -> float:
        delay = next(self._delays)
        if self._last_error is not None:
            delay = max(delay, retry_after_seconds(self._last_error) or 0.0)
            log.warning("Transient error (%s); retrying in %.1f s", describe_error(self._last_error), delay)
            self._last_error = None
        return delay


class TransientRetry(Retry):
    """``google.api_core.retry.Retry`` that honours Retry-After and logs every retry.

    It is a drop-in ``retry=`` argument for the generated Google clients, and a decorator for any
    other callable (e.g. the Kubernetes client): ``DEFAULT_RETRY(fn)(*args)``.
    """

    def __call__(self, func: Callable[..., Any], on_error: Callable[[Exception], Any] | None = None):
        caller_on_error = self._on_error or on_error

        @functools.wraps(func)
        def retry_wrapped(*args: Any, **kwargs: Any) -> Any:
            backoff = _Backoff(self._initial, self._maximum, self._multiplier)

            def on_retryable_error(exc: Exception) -> None:
                backoff.record(exc)
                if caller_on_error is not None:
                    caller_on_error(exc)

            return retry_target(
                functools.partial(func, *args, **kwargs),
                self._predicate,
                backoff,
                timeout=self._timeout,
                on_error=on_retryable_error,
            )

        return retry_wrapped


def transient_retry(timeout: float = RETRY_TIMEOUT) -> TransientRetry:
    """The shared policy with a different total retry budget (seconds)."""
    return TransientRetry(
        predicate=is_transient,
        initial=INITIAL_BACKOFF,
        maximum=MAX_BACKOFF,
        multiplier=2.0,
        timeout=timeout,
    )


DEFAULT_RETRY = transient_retry()
