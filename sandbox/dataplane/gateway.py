"""One programmed Gateway served on its loopback address: a listener per spec listener, body-based routing,
HTTPRoute selection, the endpoint picker for InferencePools, and an unbuffered proxy to the chosen pod.

Errors are the load balancer's, as plain text (Envoy's wording), never OpenAI JSON: 404 no route,
500 missing backend, 503 no healthy upstream, 504 backend timeout, 413 body too large; the EPP
refuses bad bodies with 400; a body the body-based router cannot parse gets the load balancer's 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from sandbox.dataplane import backends, routing, textgen
from sandbox.dataplane.objects import HTTPROUTE, NAMESPACE, StoreView, key_of
from sandbox.dataplane.picker import EPP, Endpoint, EndpointPicker, MetricsScraper

log = logging.getLogger(__name__)

MAX_REQUEST_BODY = 1024 * 1024
CONNECTION_POOL_LIMIT = 256
MODEL_HEADER = "X-Gateway-Model-Name"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
# Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded; length and host are rewritten by the client.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
LISTENER_KEY = web.AppKey("listener", routing.Listener)


@dataclass
class GatewayError(Exception):
    status: int
    text: str


def _plain(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text, content_type="text/plain")
    response.headers["via"] = "1.1 google"
    return response


def _epp_checked_body(body: bytes) -> tuple[dict, str]:
    """The JSON body and its prompt text, or the EPP's 400."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise GatewayError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise GatewayError(400, "request body is not a JSON object")
    if not payload.get("model"):
        raise GatewayError(400, "model not found in request body")
    if isinstance(payload.get("messages"), list) and payload["messages"]:
        return payload, textgen.chat_prompt_text([m for m in payload["messages"] if isinstance(m, dict)])
    if isinstance(payload.get("prompt"), str):
        return payload, payload["prompt"]
    raise GatewayError(400, "prompt or messages not found in request body")


def _body_router_failed() -> GatewayError:
    """The body-based router's error ends its ext_proc stream; with the extension's failOpen false (the
    GCPRoutingExtension default) the load balancer answers "a generic 500 error" (Extension.failOpen,
    https://cloud.google.com/service-extensions/docs/reference/rest/v1/ExtensionChain); Envoy's ext_proc
    filter sends that local reply with an empty body (source/extensions/filters/http/ext_proc,
    onGrpcError: sendLocalReply(InternalServerError, ""))."""
    return GatewayError(500, "")


def _route_by_body(body: bytes, headers: CIMultiDict, fail_open: bool) -> None:
    """The body-based router (pkg/bbr/handlers/request.go, v1.0.0): Go's json.Unmarshal of the body into
    struct{Model string `json:"model"`}. The model, when not empty, becomes X-Gateway-Model-Name before
    routes are matched; a body without one passes unchanged; a body Unmarshal refuses is an error, which
    an extension with failOpen true skips ("request or response processing continues without error")."""
    try:
        model = _go_unmarshal_model(body)
    except GatewayError:
        if fail_open:
            return
        raise
    if model:
        headers[MODEL_HEADER] = model


def _go_unmarshal_model(body: bytes) -> str:
    """What encoding/json leaves in RequestBody.Model; its refusals raise the router's failure: invalid
    JSON (NaN and Infinity included), a top level that is not an object or null, a "model" that is not
    a string or null. Keys match the field case-insensitively, the last one wins, and null leaves the
    field as it was; invalid UTF-8 is replaced, not refused."""
    try:
        payload = json.loads(
            body.decode("utf-8", errors="replace"),
            object_pairs_hook=_KeyValuePairs,
            parse_constant=_refuse_constant,
        )
    except (ValueError, RecursionError):
        raise _body_router_failed() from None
    if payload is None:
        return ""
    if not isinstance(payload, _KeyValuePairs):
        raise _body_router_failed()  # an array, string, number or boolean cannot fill a struct
    model = ""
    for key, value in payload:
        if key.lower() != "model" or value is None:
            continue
        if not isinstance(value, str):
            raise _body_router_failed()
        model = value
    return model


class _KeyValuePairs(list):
    """A JSON object as its key-value pairs in order, duplicates kept (Go decodes each in turn)."""


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


class GatewayServer:
    def __init__(
        self,
        store: StoreView,
        gateway: dict,
        address: str,
        picker_mode: str = EPP,
        middlewares: Iterable = (),
    ) -> None:
        self.namespace, self.name = key_of(gateway)
        self.address = address
        self.listeners = routing.listeners_of(gateway)
        self.picker = EndpointPicker(picker_mode)
        self._store = store
        self._middlewares = tuple(middlewares)
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._scrapers: dict[str, MetricsScraper] = {}
        self._rng = random.Random()

    @property
    def signature(self) -> tuple:
        """What, when changed on the Gateway object, means the listeners must be rebuilt."""
        return self.address, tuple(self.listeners)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONNECTION_POOL_LIMIT)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )
        try:
            for listener in self.listeners:
                await self._start_listener(listener)
        except BaseException:
            await self.stop()
            raise

    async def _start_listener(self, listener: routing.Listener) -> None:
        app = web.Application(middlewares=self._middlewares, client_max_size=MAX_REQUEST_BODY)
        app[LISTENER_KEY] = listener
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, self.address, listener.port).start()
        except PermissionError as error:
            raise PermissionError(
                f"cannot bind Gateway {self.namespace}/{self.name} listener {listener.name!r} to "
                f"{self.address}:{listener.port} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            ) from error
        log.info(
            "gateway %s/%s listener %s on http://%s:%s",
            self.namespace,
            self.name,
            listener.name,
            self.address,
            listener.port,
        )

    async def stop(self) -> None:
        for scraper in self._scrapers.values():
            await scraper.stop()
        self._scrapers.clear()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- request path --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        listener = request.app[LISTENER_KEY]
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _plain(413, "Payload Too Large")
        # Envoy ends the stream with the headers when the request has no body (GET, Content-Length: 0);
        # the ext_proc servers then see no body phase at all.
        headers_only = not request.body_exists
        headers = CIMultiDict(request.headers)
        try:
            router = None
            if not headers_only:
                router = await backends.running_body_router(self._store, self.namespace, self.name)
            if router is not None:
                _route_by_body(body, headers, fail_open=router.get("failOpen") is True)
            match = await self._select_rule(listener, request, headers)
            if match is None:
                return _plain(404, "")
            backend = self._choose_backend(match)
            endpoint, timeout = await self._choose_endpoint(backend, body, headers_only)
        except GatewayError as error:
            return _plain(error.status, error.text)
        return await self._proxy(request, headers, body, endpoint, timeout, picked_by_epp=backend.is_pool)

    async def _select_rule(
        self, listener: routing.Listener, request: web.Request, headers: CIMultiDict
    ) -> routing.RouteMatch | None:
        routes = await self._store.list(HTTPROUTE)
        namespace_labels = {}
        if listener.allowed_namespaces == "Selector":
            namespace_labels = {
                ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
                for ns in await self._store.list(NAMESPACE)
            }
        route_request = routing.RouteRequest(
            method=request.method,
            path=request.path,
            headers=headers,
            query=dict(request.query),
            host=request.host,
        )
        return routing.select_rule(routes, listener, route_request, namespace_labels)

    def _choose_backend(self, match: routing.RouteMatch) -> backends.Backend:
        refs = [ref for ref in match.backend_refs if int(ref.get("weight", 1)) > 0]
        if not refs:
            raise GatewayError(500, "fault filter abort")
        ref = self._rng.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
        try:
            return backends.backend_of(ref, match.namespace)
        except (backends.UnsupportedBackend, KeyError):
            raise GatewayError(500, "fault filter abort") from None

    async def _choose_endpoint(
        self, backend: backends.Backend, body: bytes, headers_only: bool
    ) -> tuple[Endpoint, float]:
        if backend.is_pool:
            pool = await backends.lookup_pool(self._store, backend)
            if pool is None:
                raise GatewayError(500, "fault filter abort")
            candidates = await backends.pool_endpoints(self._store, pool)
            if headers_only:
                endpoint = self._random_pod(candidates)
            else:
                _, prompt = _epp_checked_body(body)
                if not candidates:
                    raise GatewayError(503, "no healthy upstream")
                await self._scraper(backend).demand()
                endpoint = self.picker.pick(backend.key, candidates, prompt)
        else:
            service = await backends.lookup_service(self._store, backend)
            if service is None:
                raise GatewayError(500, "fault filter abort")
            candidates = await backends.service_endpoints(self._store, service, backend.port)
            if not candidates:
                raise GatewayError(503, "no healthy upstream")
            endpoint = self.picker.round_robin(backend.key, candidates)
        return endpoint, await backends.backend_timeout(self._store, backend)

    def _random_pod(self, candidates: list[Endpoint]) -> Endpoint:
        """The EPP sends a request without a body to a pod picked at random, unscored: "this is assumed
        to just be a GET" (pkg/epp/handlers/request.go HandleRequestHeaders and
        pkg/epp/requestcontrol/director.go GetRandomPod, v1.0.1). With no pod it answers an Internal
        error, which buildErrResponse (pkg/epp/handlers/server.go) turns into a 500 carrying its text."""
        if not candidates:
            raise GatewayError(500, "inference gateway: Internal - no pods available in datastore")
        return self._rng.choice(candidates)

    def _scraper(self, backend: backends.Backend) -> MetricsScraper:
        scraper = self._scrapers.get(backend.key)
        if scraper is None:

            async def endpoints() -> list[Endpoint]:
                pool = await backends.lookup_pool(self._store, backend)
                return [] if pool is None else await backends.pool_endpoints(self._store, pool)

            assert self._session is not None
            scraper = MetricsScraper(self.picker, self._session, endpoints)
            scraper.start()
            self._scrapers[backend.key] = scraper
        return scraper

    async def _proxy(
        self,
        request: web.Request,
        headers: CIMultiDict,
        body: bytes,
        endpoint: Endpoint,
        timeout: float,
        picked_by_epp: bool,
    ) -> web.StreamResponse:
        assert self._session is not None
        upstream_headers = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_FORWARDED)
        upstream_headers[DESTINATION_HEADER] = endpoint.address
        url = f"http://{endpoint.address}{request.rel_url}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                upstream = await self._session.request(
                    request.method, url, headers=upstream_headers, data=body or None, allow_redirects=False
                )
        except TimeoutError:
            return _plain(504, "upstream request timeout")
        except aiohttp.ClientError:
            return _plain(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _NOT_FORWARDED or name.lower() == "content-length":
                    response.headers.add(name, value)
            response.headers[DESTINATION_HEADER] = endpoint.address
            if picked_by_epp:
                response.headers["x-went-into-resp-headers"] = "true"  # the EPP's response-phase mark
            response.headers["via"] = "1.1 google"
            await response.prepare(request)
            try:
                async with asyncio.timeout_at(deadline):
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
            except (TimeoutError, aiohttp.ClientError):
                # Headers are gone already: all a proxy can do is cut the connection.
                with contextlib.suppress(Exception):
                    request.transport.close()
                return response
            await response.write_eof()
        return response
