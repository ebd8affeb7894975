"""The HTTP surface of one cluster's Kubernetes API: routing, auth, verbs, watch streams."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from sandbox.core.auth import TokenAuthority, authenticated
from sandbox.kube import discovery
from sandbox.kube.admission import ServiceAddresses, apply_defaults, validate
from sandbox.kube.apply import record_update, server_side_apply
from sandbox.kube.content import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    decode_body,
    parse_json,
    parse_yaml,
    require_json_answer,
    require_patch_type,
)
from sandbox.kube.logs import pod_log
from sandbox.kube.patches import json_patch, merge_patch, strategic_merge_patch
from sandbox.kube.resources import ResourceRegistry, ResourceType
from sandbox.kube.scale import scale_view, with_replicas
from sandbox.kube.selectors import FieldRequirement, Requirement, parse_field_selector, parse_label_selector
from sandbox.kube.status import (
    KubeApiError,
    bad_request,
    method_not_allowed,
    not_found,
    resource_not_served,
    success_status,
    unauthorized,
)
from sandbox.kube.store import ObjectStore
from sandbox.kube.tables import table, wants_table
from sandbox.kube.watch import CLOSE, WatchFilter, stream, write_event

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz", "/livez"})
MAX_WATCH_SECONDS = 1800


class TokenHost(Protocol):
    tokens: TokenAuthority


class ServedCluster(Protocol):
    """What the API server reads from its cluster (sandbox.kube.cluster.KubeCluster, which builds it)."""

    sandbox: TokenHost
    store: ObjectStore
    registry: ResourceRegistry
    service_addresses: ServiceAddresses
    version: str
    endpoint: str


@dataclass(frozen=True)
class ResourceRequest:
    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    # Bytes keep the Content-Type exactly as given (aggregated discovery is matched on it).
    return web.Response(body=json.dumps(body).encode(), status=status, headers={"Content-Type": content_type})


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except KubeApiError as error:
        return _json(error.to_status(), status=error.code)
    except web.HTTPException:
        raise
    except Exception as error:  # a bug in the twin: answer as the API server would, and say where
        log.exception("the Kubernetes API twin failed on %s %s", request.method, request.path)
        failure = KubeApiError(500, "InternalError", f"Internal error occurred: {type(error).__name__}")
        return _json(failure.to_status(), status=500)


class KubeApiServer:
    def __init__(self, cluster: ServedCluster) -> None:
        self.cluster = cluster
        self._watch_queues: set[asyncio.Queue] = set()

    @property
    def store(self) -> ObjectStore:
        return self.cluster.store

    @property
    def registry(self) -> ResourceRegistry:
        return self.cluster.registry

    def build_app(self, middlewares: list[Any]) -> web.Application:
        # The API server accepts request bodies up to 3 MiB (large CRDs carry big schemas).
        app = web.Application(
            middlewares=[*middlewares, status_errors, self._authenticate], client_max_size=3 * 1024 * 1024
        )
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def close_watches(self) -> None:
        for queue in list(self._watch_queues):
            queue.put_nowait(CLOSE)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.rstrip("/") not in UNAUTHENTICATED_PATHS:
            if not authenticated(request, self.cluster.sandbox.tokens, google_apis=False):
                raise unauthorized()
        return await handler(request)

    # -- routing -------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.path.strip("/")
        if path in UNAUTHENTICATED_PATHS:
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.version_info(self.cluster.version))
        if path.startswith("/openapi/"):
            return self._openapi(path)
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            return await self._resource_or_discovery(request, "", parts[1], parts[2:])
        if parts[0] == "apis" and len(parts) >= 3:
            return await self._resource_or_discovery(request, parts[1], parts[2], parts[3:])
        return self._discovery_root(request, parts)

    def _discovery_root(self, request: web.Request, parts: list[str]) -> web.Response:
        accept = request.headers.get("Accept", "")
        if parts == ["api"]:
            if discovery.wants_aggregated(accept):
                return _json(
                    discovery.aggregated(self.registry, core=True),
                    content_type=discovery.AGGREGATED_CONTENT_TYPE,
                )
            return _json(discovery.core_versions(self.cluster.endpoint))
        if parts == ["apis"]:
            if discovery.wants_aggregated(accept):
                return _json(
                    discovery.aggregated(self.registry, core=False),
                    content_type=discovery.AGGREGATED_CONTENT_TYPE,
                )
            return _json(discovery.api_group_list(self.registry))
        if len(parts) == 2 and parts[0] == "apis" and (group := discovery.api_group(self.registry, parts[1])):
            return _json(group)
        raise resource_not_served(request.path)

    def _openapi(self, path: str) -> web.Response:
        if path == "/openapi/v3":
            return _json(discovery.openapi_index(self.registry))
        key = path.removeprefix("/openapi/v3/").split("/")
        if key[0] == "api" and len(key) == 2:
            document = discovery.openapi_document(self.registry, "", key[1])
        elif key[0] == "apis" and len(key) == 3:
            document = discovery.openapi_document(self.registry, key[1], key[2])
        else:
            document = None
        if document is None:
            raise resource_not_served(path)
        return _json(document)

    async def _resource_or_discovery(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        if not rest:
            listing = discovery.resource_list(self.registry, group, version)
            if listing is None:
                raise resource_not_served(request.path)
            return _json(listing)
        target = self._parse_resource_path(request.path, group, version, rest)
        return await self._serve(request, target)

    def _parse_resource_path(self, path: str, group: str, version: str, rest: list[str]) -> ResourceRequest:
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespaced_type = self.registry.by_plural(group, version, rest[2])
            if namespaced_type is not None and namespaced_type.namespaced and len(rest) <= 5:
                return ResourceRequest(namespaced_type, rest[1], _at(rest, 3), _at(rest, 4))
        resource_type = self.registry.by_plural(group, version, rest[0])
        if resource_type is None or len(rest) > 3:
            raise resource_not_served(path)
        return ResourceRequest(resource_type, None, _at(rest, 1), _at(rest, 2))

    async def _serve(self, request: web.Request, target: ResourceRequest) -> web.StreamResponse:
        require_json_answer(request.headers.get("Accept", ""))
        if target.subresource == "log" and target.resource_type.kind == "Pod" and target.name is not None:
            return self._log(request, target)
        if target.subresource not in (None, "status", "scale") or (
            target.subresource == "status" and not target.resource_type.has_status
        ):
            raise resource_not_served(request.path)
        if target.subresource == "scale":
            if not target.resource_type.has_scale or target.name is None:
                raise resource_not_served(request.path)
            return await self._scale(request, target)
        if target.name is None:
            if target.resource_type.namespaced is False and target.namespace is not None:
                raise resource_not_served(request.path)
            handlers = {"GET": self._list_or_watch, "POST": self._create, "DELETE": self._delete_collection}
        else:
            if target.resource_type.namespaced and target.namespace is None:
                raise resource_not_served(request.path)
            handlers = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch, "DELETE": self._delete}
        handler = handlers.get(request.method)
        if handler is None:
            await request.read()
            raise method_not_allowed(
                f"the server does not allow this method on the requested resource: {request.method}"
            )
        return await handler(request, target)

    # -- reads ---------------------------------------------------------------------------------

    async def _get(self, request: web.Request, target: ResourceRequest) -> web.Response:
        obj = self._existing(target)
        if wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "")
            return _json(table(target.resource_type, [obj], obj["metadata"]["resourceVersion"], include))
        return _json(obj)

    def _existing(self, target: ResourceRequest) -> dict[str, Any]:
        resource_type = target.resource_type
        obj = self.store.get(resource_type.api_version, resource_type.kind, target.namespace, target.name)
        if obj is None:
            raise not_found(resource_type.plural, target.name or "", resource_type.group)
        return obj

    async def _list_or_watch(self, request: web.Request, target: ResourceRequest) -> web.StreamResponse:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        if _flag(request, "watch"):
            return await self._watch(request, target, labels, fields)
        resource_type = target.resource_type
        items = self.store.select(
            resource_type.api_version, resource_type.kind, target.namespace, labels, fields
        )
        if wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "")
            return _json(table(resource_type, items, self.store.resource_version, include))
        return _json(
            {
                "kind": resource_type.list_kind,
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": items,
            }
        )

    async def _watch(
        self,
        request: web.Request,
        target: ResourceRequest,
        labels: list[Requirement],
        fields: list[FieldRequirement],
    ) -> web.StreamResponse:
        resource_type = target.resource_type
        timeout = _bounded_timeout(request.query.get("timeoutSeconds"))
        since = request.query.get("resourceVersion", "")
        revision = None if since in ("", "0") else _revision(since)  # a bad version is a 400, not an event
        as_table = wants_table(request.headers.get("Accept", ""))
        include = request.query.get("includeObject", "")

        def render(obj: dict[str, Any]) -> dict[str, Any]:
            if not as_table:
                return obj
            return table(resource_type, [obj], obj["metadata"]["resourceVersion"], include)

        watch_filter = WatchFilter(resource_type, target.namespace, labels, fields)
        # Subscribe before reading the backlog: nothing can change in between (one event loop).
        queue = self.store.subscribe()
        self._watch_queues.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            current = self.store.select(
                resource_type.api_version, resource_type.kind, target.namespace, labels, fields
            )
            try:
                if revision is None:
                    backlog = watch_filter.start_from_listing(current)
                else:

                    def earlier(namespace: str, name: str) -> dict[str, Any] | None:
                        return self.store.version_at(
                            resource_type.api_version, resource_type.kind, namespace or None, name, revision
                        )

                    changes = self.store.events_since(revision)
                    backlog = watch_filter.start_after(current, changes, earlier)
            except KubeApiError as expired:
                await response.prepare(request)
                await write_event(response, "ERROR", expired.to_status())
                return response
            await response.prepare(request)
            await stream(response, queue, backlog, watch_filter, render, timeout)
        finally:
            self._watch_queues.discard(queue)
            self.store.unsubscribe(queue)
        return response

    # -- writes --------------------------------------------------------------------------------

    async def _create(self, request: web.Request, target: ResourceRequest) -> web.Response:
        body = await _read_body(request, target)
        obj = self._conform(body, target, name_from_path=False)
        self._require_namespace(target)
        resource_type = target.resource_type
        validate(resource_type, obj, self.store)
        apply_defaults(resource_type, obj, None, self.cluster.service_addresses)
        record_update(None, obj, request.query.get("fieldManager") or _user_agent_manager(request))
        if _dry_run(request):
            return _json(obj, status=201)
        return _json(self.store.create(obj), status=201)

    async def _replace(self, request: web.Request, target: ResourceRequest) -> web.Response:
        body = await _read_body(request, target)
        incoming = self._conform(body, target, name_from_path=True)
        existing = self._existing(target)
        return self._update(request, target, existing, incoming, track_manager=True)

    async def _patch(self, request: web.Request, target: ResourceRequest) -> web.Response:
        raw = await request.read()
        resource_type = target.resource_type
        content_type = require_patch_type(request.headers.get("Content-Type", ""), resource_type)
        existing = self.store.get(
            resource_type.api_version, resource_type.kind, target.namespace, target.name
        )
        if content_type == APPLY_PATCH:
            return self._apply(request, target, existing, parse_yaml(raw))
        if existing is None:
            raise not_found(resource_type.plural, target.name or "", resource_type.group)
        body = parse_json(raw)
        patched = _patched(existing, content_type, body)
        incoming = self._conform(patched, target, name_from_path=True)
        return self._update(request, target, existing, incoming, track_manager=True)

    def _log(self, request: web.Request, target: ResourceRequest) -> web.Response:
        if request.method != "GET":
            raise method_not_allowed(f"the log subresource does not allow {request.method}")
        tail = request.query.get("tailLines")
        if tail is not None and not tail.lstrip("-").isdigit():
            raise bad_request(f"invalid tailLines {tail!r}")
        text = pod_log(
            self._existing(target),
            request.query.get("container"),
            _flag(request, "previous"),
            int(tail) if tail is not None else None,
        )
        return web.Response(text=text, content_type="text/plain")

    async def _scale(self, request: web.Request, target: ResourceRequest) -> web.Response:
        """The `scale` subresource (autoscaling/v1 Scale): what `kubectl scale` reads and writes."""
        raw = await request.read()
        existing = self._existing(target)
        if request.method == "GET":
            return _json(scale_view(existing))
        if request.method not in ("PUT", "PATCH"):
            raise method_not_allowed(f"the scale subresource does not allow {request.method}")
        if request.method == "PUT":
            wanted = _require_object(parse_json(raw))
        else:
            content_type = require_patch_type(request.headers.get("Content-Type", ""), target.resource_type)
            wanted = _patched(scale_view(existing), content_type, parse_json(raw))
        updated = with_replicas(existing, wanted, target.resource_type.plural)
        return _json(scale_view(self.store.replace(updated)))

    def _apply(
        self, request: web.Request, target: ResourceRequest, existing: dict[str, Any] | None, body: Any
    ) -> web.Response:
        manager = request.query.get("fieldManager")
        if not manager:
            raise bad_request("PATCH, application/apply-patch+yaml requires the fieldManager query parameter")
        applied = self._conform(_require_object(body), target, name_from_path=True)
        force = _flag(request, "force")
        resource_type = target.resource_type
        if target.subresource == "status" and existing is None:
            raise not_found(resource_type.plural, target.name or "", resource_type.group)
        if existing is None:
            self._require_namespace(target)
            describe = (resource_type.plural, target.name or "", resource_type.group)
            created = server_side_apply(None, applied, manager, force, describe)
            validate(resource_type, created, self.store)
            apply_defaults(resource_type, created, None, self.cluster.service_addresses)
            if _dry_run(request):
                return _json(created, status=201)
            return _json(self.store.create(created), status=201)
        describe = (resource_type.plural, target.name or "", resource_type.group)
        merged = server_side_apply(existing, applied, manager, force, describe)
        return self._update(request, target, existing, merged, track_manager=False)

    def _update(
        self,
        request: web.Request,
        target: ResourceRequest,
        existing: dict[str, Any],
        incoming: dict[str, Any],
        *,
        track_manager: bool,
    ) -> web.Response:
        resource_type = target.resource_type
        if target.subresource == "status":
            updated = copy.deepcopy(existing)
            updated["status"] = incoming.get("status", {})
            updated["metadata"]["resourceVersion"] = incoming["metadata"].get("resourceVersion")
        else:
            updated = incoming
            if resource_type.has_status:
                updated["status"] = existing.get("status", {})
            validate(resource_type, updated, self.store)
            apply_defaults(resource_type, updated, existing, self.cluster.service_addresses)
        if track_manager:
            record_update(
                existing, updated, request.query.get("fieldManager") or _user_agent_manager(request)
            )
        if _dry_run(request):
            return _json(updated)
        return _json(self.store.replace(updated))

    async def _delete(self, request: web.Request, target: ResourceRequest) -> web.Response:
        await request.read()  # clients send DeleteOptions; an unread body corrupts keep-alive connections
        existing = self._existing(target)
        resource_type = target.resource_type
        if _dry_run(request):
            return _json(existing)
        deleted = self.store.delete(
            resource_type.api_version, resource_type.kind, target.namespace, target.name
        )
        if self.store.is_pending_deletion(deleted):
            # Still there, waiting for finalizers: the API server answers 200 with the object (k8s
            # staging/src/k8s.io/apiserver/pkg/endpoints/handlers/delete.go).
            return _json(deleted)
        return _json(
            success_status(
                resource_type.plural, target.name or "", resource_type.group, deleted["metadata"]["uid"]
            )
        )

    async def _delete_collection(self, request: web.Request, target: ResourceRequest) -> web.Response:
        await request.read()
        resource_type = target.resource_type
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        doomed = self.store.select(
            resource_type.api_version, resource_type.kind, target.namespace, labels, fields
        )
        for obj in doomed:
            with contextlib.suppress(KubeApiError):  # already gone through an earlier cascade
                self.store.delete(
                    resource_type.api_version,
                    resource_type.kind,
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                )
        return _json(
            {
                "kind": resource_type.list_kind,
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": doomed,
            }
        )

    # -- helpers -------------------------------------------------------------------------------

    def _conform(self, body: Any, target: ResourceRequest, *, name_from_path: bool) -> dict[str, Any]:
        """Check a request body names the object the URL names, and fill what the URL implies."""
        obj = copy.deepcopy(_require_object(body))
        resource_type = target.resource_type
        if (
            obj.setdefault("apiVersion", resource_type.api_version) != resource_type.api_version
            or obj.setdefault("kind", resource_type.kind) != resource_type.kind
        ):
            raise bad_request(
                f"the API version in the data ({obj['apiVersion']}) and kind ({obj['kind']}) do not match the "
                f"resource {resource_type.api_version}, {resource_type.kind} the request was sent to"
            )
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if resource_type.namespaced:
            sent = metadata.setdefault("namespace", target.namespace)
            if sent != target.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        else:
            metadata.pop("namespace", None)
        if name_from_path:
            if metadata.setdefault("name", target.name) != target.name:
                raise bad_request("the name of the object does not match the name on the URL")
        return obj

    def _require_namespace(self, target: ResourceRequest) -> None:
        if target.namespace is not None and self.store.get("v1", "Namespace", None, target.namespace) is None:
            raise not_found("namespaces", target.namespace)


def _at(parts: list[str], index: int) -> str | None:
    return parts[index] if len(parts) > index and parts[index] else None


def _revision(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"invalid resourceVersion {text!r}") from None


def _bounded_timeout(text: str | None) -> float:
    if not text:
        return MAX_WATCH_SECONDS
    try:
        return max(0.0, min(float(text), MAX_WATCH_SECONDS))
    except ValueError:
        raise bad_request(f"invalid timeoutSeconds {text!r}") from None


def _flag(request: web.Request, name: str) -> bool:
    # kubectl sends "true"; the Python client sends "True".
    return request.query.get(name, "").lower() in ("true", "1")


def _dry_run(request: web.Request) -> bool:
    return "dryRun" in request.query


def _user_agent_manager(request: web.Request) -> str:
    return request.headers.get("User-Agent", "unknown").split("/")[0] or "unknown"


async def _read_body(request: web.Request, target: ResourceRequest) -> Any:
    return decode_body(await request.read(), request.headers.get("Content-Type", ""), target.resource_type)


def _patched(document: dict[str, Any], content_type: str, body: Any) -> dict[str, Any]:
    """`document` with a json, merge or strategic-merge patch applied (resourceVersion from the patch, if any).

    `content_type` has passed `require_patch_type`, which refuses strategic merge for custom resources.
    """
    if content_type == JSON_PATCH:
        patched = json_patch(document, body)
    elif content_type == MERGE_PATCH:
        patched = merge_patch(document, _require_object(body))
    elif content_type == STRATEGIC_MERGE_PATCH:
        patched = strategic_merge_patch(document, _require_object(body))
    else:  # server-side apply on a subresource the twin does not apply to (scale)
        raise bad_request(f"the twin does not support {content_type} on this subresource")
    sent_version = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
    patched.setdefault("metadata", {})["resourceVersion"] = (
        sent_version or document["metadata"]["resourceVersion"]
    )
    return patched


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body
