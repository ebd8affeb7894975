"""Bounded polling of long-running operations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from gke_inference.hooks._errors import OperationTimeoutError

T = TypeVar("T")

DEFAULT_OPERATION_TIMEOUT = 600.0
DEFAULT_POLL_INTERVAL = 2.0
FIRST_POLL_INTERVAL = 0.25


def poll_until(
    fetch: Callable[[], T],
    is_done: Callable[[T], bool],
    *,
    description: str,
    timeout: float,
    poll_interval: float,
) -> T:
    """Call ``fetch`` until ``is_done`` holds for its result, at most ``timeout`` seconds.

    Polls start quick and double up to ``poll_interval``: short operations finish without a long
    first sleep, long ones are not polled more than needed.
    """
    if timeout <= 0 or poll_interval <= 0:
        raise ValueError(f"timeout and poll_interval must be positive, got {timeout} and {poll_interval}")
    deadline = time.monotonic() + timeout
    interval = min(FIRST_POLL_INTERVAL, poll_interval)
    while True:
        result = fetch()
        if is_done(result):
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OperationTimeoutError(f"{description} still running after {timeout:g} s")
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, poll_interval)
