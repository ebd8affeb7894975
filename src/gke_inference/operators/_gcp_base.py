"""What every GCP operator of this package shares: connection args and its failure message."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from gke_inference.errors import failing_fast
from gke_inference.ownership import Owner


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

    @property
    def ownership(self) -> Owner:
        """Whose marks this task's DAG (its environment) puts on what it creates and deletes."""
        return Owner.of_dag(self.dag_id)

    def hook_kwargs(self) -> dict[str, Any]:
        return {"gcp_conn_id": self.gcp_conn_id, "impersonation_chain": self.impersonation_chain}

    def failing_fast_on_terminal_errors(self) -> AbstractContextManager[None]:
        return failing_fast(f"{self.action} (tutorial {self.tutorial_step})")
