"""Service Usage hook: enable the APIs a project needs, idempotently (tutorial 1.2)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from google.api_core import exceptions as api_exceptions
from google.cloud import service_usage_v1

from gke_inference.hooks._base import EndpointAwareGoogleHook
from gke_inference.hooks._errors import InvalidInputError, OperationFailedError
from gke_inference.hooks._operations import DEFAULT_OPERATION_TIMEOUT, poll_until
from gke_inference.hooks._retry import DEFAULT_RETRY

# The Service Usage API accepts at most 20 services per batchEnable call.
BATCH_ENABLE_LIMIT = 20
OPERATION_POLL_INTERVAL = 10.0


class ServiceUsageHook(EndpointAwareGoogleHook):
    """Read and enable Google APIs (``compute.googleapis.com``, ...) in a project."""

    @cached_property
    def client(self) -> service_usage_v1.ServiceUsageClient:
        return self.named_client(service_usage_v1.ServiceUsageClient(**self.client_kwargs()))

    def is_enabled(self, service: str, project_id: str | None = None) -> bool:
        project = self.resolve_project_id(project_id)
        found = self.client.get_service(
            request={"name": f"projects/{project}/services/{service}"},
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        return found.state == service_usage_v1.State.ENABLED

    def enable_services(
        self,
        services: Iterable[str],
        project_id: str | None = None,
        *,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> dict[str, list[str]]:
        """Enable what is disabled and wait for it.

        Returns ``{"enabled": [newly enabled], "already_enabled": [...]}``.
        """
        wanted = list(dict.fromkeys(s.strip() for s in services if s and s.strip()))
        if not wanted:
            raise InvalidInputError("No services to enable")
        project = self.resolve_project_id(project_id)
        disabled = [s for s in wanted if not self.is_enabled(s, project)]
        for start in range(0, len(disabled), BATCH_ENABLE_LIMIT):
            self._batch_enable(disabled[start : start + BATCH_ENABLE_LIMIT], project, timeout)
        return {"enabled": disabled, "already_enabled": [s for s in wanted if s not in disabled]}

    def _batch_enable(self, services: list[str], project: str, timeout: float) -> None:
        self.log.info("Enabling %s in project %s", ", ".join(services), project)
        operation = self.client.batch_enable_services(
            request={"parent": f"projects/{project}", "service_ids": services},
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        description = f"Enabling {', '.join(services)}"
        # Polled here rather than with operation.result(): its refreshes carry no request timeout.
        done = poll_until(
            lambda: self.client.get_operation(
                request={"name": operation.operation.name},
                retry=DEFAULT_RETRY,
                timeout=self.request_timeout,
            ),
            lambda latest: latest.done,
            description=description,
            timeout=timeout,
            poll_interval=OPERATION_POLL_INTERVAL,
        )
        if done.error.code:
            http_status = api_exceptions.from_grpc_status(done.error.code, done.error.message).code
            raise OperationFailedError(description, done.error.message, http_status=http_status)
