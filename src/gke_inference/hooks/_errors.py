"""Errors raised by our hooks. Which of them are terminal is decided in ``gke_inference.errors``."""

from __future__ import annotations


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
