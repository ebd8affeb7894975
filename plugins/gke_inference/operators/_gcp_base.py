"""What every GCP operator of this package shares: connection args and the terminal-error rule."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.hooks._errors import InvalidInputError, explain, is_terminal

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


class GcpOperator(BaseOperator):
    """Base of the GCP-side operators.

    Subclasses name their tutorial step and action; a terminal error (bad input, 400, 403, an
    operation that failed for good) then fails the task without retries, with a message such as
    "Creating the VPC (tutorial 1.3) failed: ...". Transient errors propagate, and Airflow retries.
    """

    tutorial_step: ClassVar[str] = ""
    action: ClassVar[str] = ""
    template_fields: Sequence[str] = ("project_id", "gcp_conn_id", "impersonation_chain")

    def __init__(
        self,
        *,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

    def hook_kwargs(self) -> dict[str, Any]:
        return {"gcp_conn_id": self.gcp_conn_id, "impersonation_chain": self.impersonation_chain}

    @contextmanager
    def failing_fast_on_terminal_errors(self) -> Generator[None, None, None]:
        try:
            yield
        except AirflowFailException:
            raise
        except Exception as exc:
            if is_terminal(exc):
                raise AirflowFailException(
                    f"{self.action} (tutorial {self.tutorial_step}) failed: {explain(exc)}"
                ) from exc
            raise


def as_bool(value: object, name: str) -> bool:
    """A boolean from a bool or from the string a Jinja template renders ("True", "false", ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be true or false, got {value!r}")


def as_seconds(value: object, name: str) -> float:
    """A positive number of seconds from a number or its rendered string."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}")
    return seconds
