"""Fault injection and the request log, shared by every sandbox server.

Two kinds of faults:
* HTTP rules, applied by `fault_middleware` before a request reaches its handler: answer with a
  status (and Retry-After), add a delay, or drop the connection without a response.
* Behaviours, named switches that the simulated controllers consult (`behaviour(name, **match)`),
  e.g. "cluster_error" makes a cluster go to ERROR instead of RUNNING. A behaviour rule applies
  when every key of its match equals the attribute the controller passes:
    operation_error: api ("compute"|"container"|"serviceusage"), operation (Compute "insert"/"delete",
                     "CREATE_CLUSTER", Service Usage "enable"/"batchEnable"), resource (the resource
                     or service name), project
    cluster_error:   project, location, cluster
    pods_never_ready, gateway_never_programmed: see sandbox.kube.controllers (project, location,
                     cluster, namespace, and the object's own names)
    managed_crds_late: project, location, cluster; each use postpones the CRDs GKE installs itself
                     (InferencePool v1) by one more managed_crds_delay (>= 1 s); without a count,
                     they never arrive
    lb_cleanup_late: project, location, cluster, namespace, name (the Gateway); each use postpones
                     the removal of a deleted Gateway's load balancer by one more lb_cleanup (>= 1 s);
                     without a count, the Gateway keeps its finalizer for good
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import web

from sandbox.core.auth import PRINCIPAL_KEY

APIS = ("compute", "container", "serviceusage", "oauth", "iamcredentials", "kube", "gateway", "model", "hub")
BEHAVIOURS = (
    "operation_error",
    "cluster_error",
    "pods_never_ready",
    "gateway_never_programmed",
    "managed_crds_late",
    "lb_cleanup_late",
)
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*")
_GOOGLE_APIS = ("compute", "container", "serviceusage", "oauth", "iamcredentials")


@dataclass
class FaultRule:
    api: str
    method: str = "*"
    path: str = ""
    status: int | None = None
    retry_after: int | None = None
    delay: float | None = None
    drop: bool = False
    count: int | None = None
    id: int = 0
    _pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"fault api must be one of {APIS}, not {self.api!r}")
        self.method = self.method.upper()
        if self.method not in _HTTP_METHODS:
            raise ValueError(f"fault method must be one of {_HTTP_METHODS}, not {self.method!r}")
        try:
            self._pattern = re.compile(self.path)
        except re.error as error:
            raise ValueError(f"fault path is not a valid regular expression: {error}") from None
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError(f"fault status must be an HTTP status code, not {self.status!r}")
        if self.status is None and self.delay is None and not self.drop:
            raise ValueError("a fault needs at least one of status, delay or drop")
        if self.delay is not None and not 0 <= float(self.delay) <= 3600:
            raise ValueError("fault delay must be between 0 and 3600 seconds")
        if self.count is not None and int(self.count) < 1:
            raise ValueError("fault count must be a positive number of times, or None for forever")

    def matches(self, api: str, method: str, path: str) -> bool:
        return (
            self.api == api
            and self.method in ("*", method.upper())
            and self._pattern.search(path) is not None
        )

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if not key.startswith("_")}


@dataclass
class BehaviourRule:
    name: str
    match: dict[str, Any]
    count: int | None = None
    id: int = 0
    # How many times a controller has acted on it: a test waits for this instead of sleeping.
    used: int = 0

    def __post_init__(self) -> None:
        if self.name not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {self.name!r}")
        if self.count is not None and int(self.count) < 1:
            raise ValueError("behaviour count must be a positive number of times, or None for forever")

    def applies_to(self, attributes: dict[str, Any]) -> bool:
        return all(attributes.get(key) == value for key, value in self.match.items())


class FaultTable:
    """HTTP fault rules and behaviours; first matching rule wins, `count` limits how often it fires."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._behaviours: list[BehaviourRule] = []
        self._ids = itertools.count(1)

    def add(self, **rule: Any) -> int:
        """Add an HTTP fault rule (see FaultRule), or a behaviour when `behaviour=<name>` is given."""
        if "behaviour" in rule:
            name = rule.pop("behaviour")
            return self.add_behaviour(name, **rule)
        unknown = set(rule) - {"api", "method", "path", "status", "retry_after", "delay", "drop", "count"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        parsed = FaultRule(**rule, id=next(self._ids))
        self._rules.append(parsed)
        return parsed.id

    def add_behaviour(self, name: str, /, count: int | None = None, **match: Any) -> int:
        """Switch on behaviour `name` for controllers whose attributes include all of `match`."""
        rule = BehaviourRule(name=name, match=match, count=count, id=next(self._ids))
        self._behaviours.append(rule)
        return rule.id

    def clear(self) -> None:
        self._rules.clear()
        self._behaviours.clear()

    def rules(self) -> list[dict]:
        return [rule.as_dict() for rule in self._rules] + [asdict(rule) for rule in self._behaviours]

    def take(self, api: str, method: str, path: str) -> FaultRule | None:
        """The first rule matching this request, consuming one of its uses."""
        for rule in self._rules:
            if rule.matches(api, method, path):
                self._consume(rule, self._rules)
                return rule
        return None

    def behaviour(self, name: str, /, **attributes: Any) -> bool:
        """True when a behaviour rule named `name` applies to an object with these attributes."""
        for rule in self._behaviours:
            if rule.name == name and rule.applies_to(attributes):
                rule.used += 1
                self._consume(rule, self._behaviours)
                return True
        return False

    @staticmethod
    def _consume(rule: FaultRule | BehaviourRule, rules: list) -> None:
        if rule.count is None:
            return
        rule.count -= 1
        if rule.count <= 0:
            rules.remove(rule)


class RequestLog:
    """The last requests served by every sandbox server (no headers or bodies: they may hold secrets).

    An entry has api, method, path, query, status and ts; an authenticated one also has ``principal``
    (the service account its token acts as: an impersonated one's for a token minted by
    generateAccessToken, sandbox.gcp.iamcredentials); a request a fault delayed also has
    ``delayed: True`` and ``client_gone``: whether the client had closed the connection (e.g. its
    timeout ran out) before the delay ended.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self._entries: collections.deque[dict] = collections.deque(maxlen=capacity)

    def append(
        self,
        api: str,
        method: str,
        path: str,
        query: str,
        status: int | None,
        client_gone: bool | None = None,
        principal: str | None = None,
    ) -> None:
        """``client_gone`` is given (True or False) only for a request a fault delayed; ``principal``
        (the service account its token acts as) only for an authenticated one."""
        entry = {
            "api": api,
            "method": method,
            "path": path,
            "query": query,
            "status": status,
            "ts": time.time(),
        }
        if client_gone is not None:
            entry.update(delayed=True, client_gone=client_gone)
        if principal is not None:
            entry["principal"] = principal
        self._entries.append(entry)

    def entries(self, api: str | None = None) -> list[dict]:
        return [dict(entry) for entry in self._entries if api is None or entry["api"] == api]

    def clear(self) -> None:
        self._entries.clear()


# Requests that create something: Service Usage enables, Compute inserts, Container creates, and
# Kubernetes creates (a POST, or a server-side apply that answered 201 Created).
_GCP_CREATE = re.compile(r"(:enable|:batchEnable|/networks|/subnetworks|/clusters)$")


def creating_requests(entries: list[dict]) -> list[str]:
    """The request-log entries that created a resource, as "METHOD path" lines."""
    found = []
    for entry in entries:
        if entry["api"] in {"compute", "container", "serviceusage"}:
            if entry["method"] == "POST" and _GCP_CREATE.search(entry["path"]):
                found.append(f"{entry['method']} {entry['path']}")
        elif entry["api"] == "kube" and (entry["method"] == "POST" or entry["status"] == 201):
            found.append(f"{entry['method']} {entry['path']}")
    return found


def _fault_response(api: str, status: int, retry_after: int | None) -> web.Response:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Injected fault"
    message = f"Injected fault: {status} {reason}"
    if api == "kube":
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason.replace(" ", ""),
            "code": status,
        }
    elif api in _GOOGLE_APIS:
        from sandbox.gcp.errors import status_name_for_code

        body = {"error": {"code": status, "message": message, "status": status_name_for_code(status)}}
    else:
        body = {"error": {"code": status, "message": message, "type": "sandbox_fault"}}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)


class FaultHost(Protocol):
    """What fault_middleware reads from its sandbox."""

    faults: FaultTable
    log: RequestLog


def fault_middleware(api_name: str, sandbox: FaultHost):
    """aiohttp middleware: apply the sandbox's fault rules for `api_name`, then log the request."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        rule = sandbox.faults.take(api_name, request.method, request.path)
        status: int | None = None
        client_gone: bool | None = None
        try:
            if rule is not None and rule.delay:
                try:
                    await asyncio.sleep(float(rule.delay))
                except asyncio.CancelledError:
                    client_gone = True  # servers with handler_cancellation cancel on disconnect
                    raise
                client_gone = _client_gone(request)
            if rule is not None and rule.drop:
                # Abort rather than close: the client sees a reset, and aiohttp skips the response.
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=499)
            if rule is not None and rule.status is not None:
                response = _fault_response(api_name, int(rule.status), rule.retry_after)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except Exception:
            status = 500  # aiohttp answers an unhandled error with 500
            raise
        finally:
            principal = request.get(PRINCIPAL_KEY)  # left by the server's authentication
            sandbox.log.append(
                api_name, request.method, request.path, request.query_string, status, client_gone, principal
            )

    return middleware


def _client_gone(request: web.Request) -> bool:
    """True when the client closed the connection (e.g. its timeout ran out) while we held the answer."""
    transport = request.transport
    return transport is None or transport.is_closing()
