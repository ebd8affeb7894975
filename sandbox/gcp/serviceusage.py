"""Service Usage v1: enable/batchEnable/get/list services, and google.longrunning operations."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable

from aiohttp import web

from sandbox.gcp.errors import GcpError, bad_request, not_found
from sandbox.gcp.hosts import ApiHost
from sandbox.gcp.operations import Operation, OperationRunner
from sandbox.gcp.state import SERVICE_TITLES, GcpState, Project
from sandbox.gcp.validation import injected_operation_failure, json_body, paginate

_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.googleapis\.com")
_TYPE_PREFIX = "type.googleapis.com/google.api.serviceusage.v1."
_BATCH_LIMIT = 20


class ServiceUsageApi:
    def __init__(self, sandbox: ApiHost, runner: OperationRunner) -> None:
        self._sandbox = sandbox
        self._state: GcpState = sandbox.gcp
        self._runner = runner
        self._operations: dict[str, Operation] = {}

    def routes(self) -> list[web.RouteDef]:
        services = "/v1/projects/{project}/services"
        return [
            web.post(services + "/{service:[^/:]+}:enable", self.enable),
            web.post(services + ":batchEnable", self.batch_enable),
            web.get(services + "/{service:[^/:]+}", self.get),
            web.get(services, self.list),
            web.get("/v1/operations/{operation:[^/:]+}", self.get_operation),
        ]

    # --- services

    async def get(self, request: web.Request) -> web.Response:
        project = self._state.project(request.match_info["project"])
        service = self._known_service(request.match_info["service"])
        return web.json_response(_service_json(project, service))

    async def list(self, request: web.Request) -> web.Response:
        project = self._state.project(request.match_info["project"])
        wanted = request.query.get("filter", "")
        if wanted not in ("", "state:ENABLED", "state:DISABLED"):
            raise bad_request(f"Invalid filter {wanted!r}: use state:ENABLED or state:DISABLED.")
        services = [
            _service_json(project, name) for name in sorted(set(SERVICE_TITLES) | project.enabled_services)
        ]
        if wanted:
            services = [s for s in services if s["state"] == wanted.removeprefix("state:")]
        page, next_token = paginate(services, request, "pageSize", default_size=50, max_size=200)
        body: dict = {"services": page}
        if next_token:
            body["nextPageToken"] = next_token
        return web.json_response(body)

    async def enable(self, request: web.Request) -> web.Response:
        project = self._state.project(request.match_info["project"])
        service = self._known_service(request.match_info["service"])

        def response() -> dict:
            return {
                "@type": _TYPE_PREFIX + "EnableServiceResponse",
                "service": _service_json(project, service),
            }

        return web.json_response(self._start(project, "enable", [service], response))

    async def batch_enable(self, request: web.Request) -> web.Response:
        project = self._state.project(request.match_info["project"])
        body = await json_body(request)
        names = body.get("serviceIds")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise bad_request("serviceIds must be a non-empty list of service names.")
        if len(names) > _BATCH_LIMIT:
            raise bad_request(f"At most {_BATCH_LIMIT} services can be enabled in one batch.")
        services = [self._known_service(name) for name in names]

        def response() -> dict:
            return {
                "@type": _TYPE_PREFIX + "BatchEnableServicesResponse",
                "services": [_service_json(project, service) for service in services],
            }

        return web.json_response(self._start(project, "batchEnable", services, response))

    # --- operations

    async def get_operation(self, request: web.Request) -> web.Response:
        name = "operations/" + request.match_info["operation"]
        operation = self._operations.get(name)
        if operation is None:
            raise not_found(f"Operation '{name}' not found.")
        return web.json_response(_operation_json(operation))

    def _start(self, project: Project, verb: str, services: list[str], response: Callable[[], dict]) -> dict:
        operation = Operation(
            name=f"operations/acat.p2-{project.number}-{uuid.uuid4()}",
            operation_type=verb,
            target=",".join(services),
            resource_names=[f"projects/{project.number}/services/{s}" for s in services],
        )
        self._operations[operation.name] = operation

        async def enable_all() -> dict:
            await asyncio.sleep(self._sandbox.profile.operation)
            for service in services:
                if self._sandbox.faults.behaviour(
                    "operation_error",
                    api="serviceusage",
                    operation=verb,
                    resource=service,
                    project=project.project_id,
                ):
                    raise injected_operation_failure(verb, service)
            for service in services:
                project.enable(service)
            return response()

        self._runner.start(operation, enable_all)
        return _operation_json(operation)

    @staticmethod
    def _known_service(name: str) -> str:
        if not _SERVICE_NAME.fullmatch(name):
            raise GcpError(
                403,
                f"Not found or permission denied for service(s): {name}.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED",
                        "domain": "serviceusage.googleapis.com",
                        "metadata": {"services": name},
                    }
                ],
            )
        return name


def _service_json(project: Project, service: str) -> dict:
    return {
        "name": f"projects/{project.number}/services/{service}",
        "parent": f"projects/{project.number}",
        "config": {"name": service, "title": SERVICE_TITLES.get(service, service)},
        "state": "ENABLED" if service in project.enabled_services else "DISABLED",
    }


def _operation_json(operation: Operation) -> dict:
    body: dict = {
        "name": operation.name,
        "metadata": {
            "@type": _TYPE_PREFIX + "OperationMetadata",
            "resourceNames": operation.resource_names,
        },
        "done": operation.done,
    }
    if operation.done and operation.error is not None:
        body["error"] = operation.error.rpc_status()
    elif operation.done:
        body["response"] = operation.result
    return body
