"""One aiohttp application serving Compute, Container, Service Usage, IAM Credentials and the OAuth
token endpoint."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.auth import authenticated, token_handler
from sandbox.core.faults import fault_middleware
from sandbox.gcp.accelerators import AcceleratorTypesApi
from sandbox.gcp.compute import ComputeApi
from sandbox.gcp.container import ContainerApi
from sandbox.gcp.errors import gcp_error_middleware, unauthenticated
from sandbox.gcp.hosts import GcpHost
from sandbox.gcp.iamcredentials import IamCredentialsApi
from sandbox.gcp.operations import OperationRunner
from sandbox.gcp.serviceusage import ServiceUsageApi

TOKEN_PATH = "/token"


def api_of_path(path: str) -> str:
    """Which API a request on the shared port belongs to (the name faults and the log use)."""
    if path == TOKEN_PATH:
        return "oauth"
    if path.endswith(":generateAccessToken"):
        return "iamcredentials"
    if path.startswith("/compute/"):
        return "compute"
    if path.startswith("/v1/operations") or "/services" in path:
        return "serviceusage"
    return "container"


def build_gcp_app(sandbox: GcpHost, runner: OperationRunner) -> web.Application:
    faults_by_api = {
        api: fault_middleware(api, sandbox)
        for api in ("oauth", "iamcredentials", "compute", "serviceusage", "container")
    }

    @web.middleware
    async def faults(request: web.Request, handler):
        return await faults_by_api[api_of_path(request.path)](request, handler)

    @web.middleware
    async def authenticate(request: web.Request, handler):
        # generateAccessToken too needs the caller's (the source credentials') valid token.
        if request.path != TOKEN_PATH and not authenticated(request, sandbox.tokens, google_apis=True):
            return unauthenticated().response()
        return await handler(request)

    app = web.Application(
        middlewares=[faults, gcp_error_middleware, authenticate], client_max_size=4 * 1024**2
    )
    app.router.add_post(TOKEN_PATH, token_handler(sandbox.tokens))
    compute = ComputeApi(sandbox, runner)
    for api in (
        ServiceUsageApi(sandbox, runner),
        compute,
        AcceleratorTypesApi(compute),
        ContainerApi(sandbox, runner),
        IamCredentialsApi(sandbox),
    ):
        app.router.add_routes(api.routes())
    return app
