"""HTTPRoute selection for one Gateway listener, per the Gateway API spec. Pure functions over dicts.

Precedence among matching rules (HTTPRouteRule docs): an Exact path beats a PathPrefix, a longer prefix
beats a shorter one, then a method match, then more header matches, then more query matches; remaining
ties go to the oldest route (creationTimestamp), then to "namespace/name" in alphabetical order, then to
the rule (and match) order inside the route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class RouteRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # any case; compared case-insensitively
    query: Mapping[str, str] = field(default_factory=dict)
    host: str = ""


@dataclass(frozen=True)
class Listener:
    gateway_namespace: str
    gateway_name: str
    name: str
    port: int
    allowed_namespaces: str = "Same"  # Same | All | Selector
    namespace_selector: Mapping[str, str] = field(default_factory=dict)
    hostname: str | None = None


@dataclass(frozen=True)
class RouteMatch:
    route: dict
    rule_index: int

    @property
    def rule(self) -> dict:
        return self.route["spec"]["rules"][self.rule_index]

    @property
    def namespace(self) -> str:
        return self.route["metadata"].get("namespace", "default")

    @property
    def backend_refs(self) -> list[dict]:
        return list(self.rule.get("backendRefs") or [])


def listeners_of(gateway: dict) -> list[Listener]:
    metadata = gateway["metadata"]
    result = []
    for spec in gateway.get("spec", {}).get("listeners") or []:
        namespaces = (spec.get("allowedRoutes") or {}).get("namespaces") or {}
        selector = (namespaces.get("selector") or {}).get("matchLabels") or {}
        result.append(
            Listener(
                gateway_namespace=metadata.get("namespace", "default"),
                gateway_name=metadata["name"],
                name=spec.get("name", ""),
                port=int(spec["port"]),
                allowed_namespaces=namespaces.get("from", "Same"),
                namespace_selector=selector,
                hostname=spec.get("hostname"),
            )
        )
    return result


def attaches_to(route: dict, listener: Listener, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether the route names this listener's Gateway as a parent, the listener admits it, and no
    controller has rejected it. namespace_labels maps namespace names to their labels (for Selector)."""
    route_namespace = route["metadata"].get("namespace", "default")
    if not _listener_admits(listener, route_namespace, namespace_labels):
        return False
    for parent in route.get("spec", {}).get("parentRefs") or []:
        if _names_listener(parent, route_namespace, listener) and not _rejected(route, parent, listener):
            return True
    return False


def _listener_admits(
    listener: Listener, route_namespace: str, namespace_labels: Mapping[str, Mapping[str, str]]
) -> bool:
    if listener.allowed_namespaces == "All":
        return True
    if listener.allowed_namespaces == "Selector":
        labels = namespace_labels.get(route_namespace, {})
        return all(labels.get(key) == value for key, value in listener.namespace_selector.items())
    return route_namespace == listener.gateway_namespace


def _names_listener(parent: dict, route_namespace: str, listener: Listener) -> bool:
    if parent.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or parent.get("kind", "Gateway") != "Gateway":
        return False
    if parent.get("name") != listener.gateway_name:
        return False
    if parent.get("namespace", route_namespace) != listener.gateway_namespace:
        return False
    if parent.get("sectionName") and parent["sectionName"] != listener.name:
        return False
    return not (parent.get("port") and int(parent["port"]) != listener.port)


def _rejected(route: dict, parent: dict, listener: Listener) -> bool:
    """A route counts until a controller reports Accepted=False for this parent (routes are served while
    their status is still being written, as a real load balancer keeps its last good config)."""
    for status in (route.get("status") or {}).get("parents") or []:
        ref = status.get("parentRef") or {}
        if ref.get("name") != parent.get("name") or ref.get("sectionName") != parent.get("sectionName"):
            continue
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Accepted" and condition.get("status") == "False":
                return True
    return False


def _hostname_matches(route: dict, listener: Listener, host: str) -> bool:
    patterns = list(route.get("spec", {}).get("hostnames") or [])
    if listener.hostname:
        patterns = patterns or [listener.hostname]
    if not patterns:
        return True
    host = host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


# -- rule matching ------------------------------------------------------------------------------------


def _path_rank(path_match: dict, path: str) -> tuple[int, int] | None:
    """(kind, length) ranking a path match against the request path, or None if it does not match."""
    kind = path_match.get("type", "PathPrefix")
    value = path_match.get("value", "/")
    if kind == "Exact":
        return (2, len(value)) if path == value else None
    if kind == "PathPrefix":
        prefix = value.rstrip("/")
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return (1, len(value))
        return None
    if kind == "RegularExpression":
        return (0, len(value)) if re.fullmatch(value, path) else None
    return None


def _match_rank(match: dict, request: RouteRequest, lowered_headers: Mapping[str, str]) -> tuple | None:
    path_rank = _path_rank(match.get("path") or {"type": "PathPrefix", "value": "/"}, request.path)
    if path_rank is None:
        return None
    method = match.get("method")
    if method and method.upper() != request.method.upper():
        return None
    headers = match.get("headers") or []
    for header in headers:
        actual = lowered_headers.get(header["name"].lower())
        if actual is None or not _value_matches(header, actual):
            return None
    queries = match.get("queryParams") or []
    for query in queries:
        actual = request.query.get(query["name"])
        if actual is None or not _value_matches(query, actual):
            return None
    return (*path_rank, 1 if method else 0, len(headers), len(queries))


def _value_matches(matcher: dict, actual: str) -> bool:
    if matcher.get("type", "Exact") == "RegularExpression":
        return re.search(matcher["value"], actual) is not None
    return actual == matcher["value"]


def select_rule(
    routes: Iterable[dict],
    listener: Listener,
    request: RouteRequest,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> RouteMatch | None:
    """The rule that serves the request on this listener, or None (the gateway then answers 404)."""
    lowered = {name.lower(): value for name, value in request.headers.items()}
    best: tuple | None = None
    chosen: RouteMatch | None = None
    for route in routes:
        if not attaches_to(route, listener, namespace_labels or {}):
            continue
        if not _hostname_matches(route, listener, request.host):
            continue
        metadata = route["metadata"]
        route_order = (
            metadata.get("creationTimestamp", ""),
            f"{metadata.get('namespace', '')}/{metadata['name']}",
        )
        for rule_index, rule in enumerate(route.get("spec", {}).get("rules") or []):
            for match_index, match in enumerate(rule.get("matches") or [{}]):
                rank = _match_rank(match, request, lowered)
                if rank is None:
                    continue
                # Higher rank wins; among equals the older route, then the smaller name, then rule order.
                key = (tuple(-part for part in rank), route_order, rule_index, match_index)
                if best is None or key < best:
                    best = key
                    chosen = RouteMatch(route=route, rule_index=rule_index)
    return chosen
