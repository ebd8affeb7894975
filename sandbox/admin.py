"""The admin HTTP endpoint: request log, faults and behaviours, state, for tests and demos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from sandbox.core.faults import FaultHost
from sandbox.core.profiles import Profile
from sandbox.core.waits import WaitLog
from sandbox.gcp.state import GcpState


class AdminHost(FaultHost, Protocol):
    """What the admin endpoint reads and changes in its sandbox."""

    gcp: GcpState
    profile: Profile
    gke_version: str
    waits: WaitLog
    clusters: Mapping[str, Any]  # each a running KubeCluster (its endpoint is shown)


def build_admin_app(sandbox: AdminHost) -> web.Application:
    async def requests(request: web.Request) -> web.Response:
        return web.json_response(sandbox.log.entries(api=request.query.get("api")))

    async def waits(request: web.Request) -> web.Response:
        return web.json_response(sandbox.waits.entries())

    async def add_fault(request: web.Request) -> web.Response:
        rule = await _json_object(request)
        try:
            rule_id = sandbox.faults.add(**rule)
        except (TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"id": rule_id}, status=201)

    async def add_behaviour(request: web.Request) -> web.Response:
        body = await _json_object(request)
        name = body.pop("name", None)
        count = body.pop("count", None)
        match = body.pop("match", {})
        if body or not isinstance(match, dict):
            return web.json_response({"error": "expected {name, count?, match?: {...}}"}, status=400)
        try:
            rule_id = sandbox.faults.add_behaviour(name, count=count, **match)
        except (TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"id": rule_id}, status=201)

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response(sandbox.faults.rules())

    async def clear_faults(request: web.Request) -> web.Response:
        sandbox.faults.clear()
        return web.Response(status=204)

    async def state(request: web.Request) -> web.Response:
        snapshot = sandbox.gcp.snapshot()
        snapshot["profile"] = sandbox.profile.name
        snapshot["gkeVersion"] = sandbox.gke_version
        snapshot["kubeClusters"] = {key: cluster.endpoint for key, cluster in sandbox.clusters.items()}
        return web.json_response(snapshot)

    app = web.Application()
    app.router.add_get("/requests", requests)
    app.router.add_get("/waits", waits)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_post("/behaviours", add_behaviour)
    app.router.add_get("/state", state)
    return app


async def _json_object(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body
