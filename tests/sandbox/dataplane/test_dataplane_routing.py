"""HTTPRoute selection (pure functions): attachment to the Gateway and the spec's precedence rules."""

from __future__ import annotations

import pytest

from sandbox.dataplane.routing import Listener, RouteRequest, listeners_of, select_rule

LISTENER = Listener(gateway_namespace="default", gateway_name="inference-gateway", name="http", port=80)
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference-gateway"}


def route(
    name: str,
    rules: list[dict],
    created: str = "2026-01-01T00:00:00Z",
    namespace: str = "default",
    parent: dict | None = None,
    **extra,
) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"parentRefs": [parent or PARENT], "rules": rules, **extra},
    }


def rule(tag: str, *matches: dict) -> dict:
    return (
        {"matches": list(matches), "backendRefs": [{"name": tag}]}
        if matches
        else {"backendRefs": [{"name": tag}]}
    )


def prefix(value: str, **more) -> dict:
    return {"path": {"type": "PathPrefix", "value": value}, **more}


def chosen(
    routes: list[dict],
    path: str = "/v1/chat/completions",
    method: str = "POST",
    headers: dict | None = None,
    listener: Listener = LISTENER,
    **kwargs,
) -> str | None:
    match = select_rule(
        routes, listener, RouteRequest(method=method, path=path, headers=headers or {}, **kwargs)
    )
    return None if match is None else match.backend_refs[0]["name"]


def test_a_rule_without_matches_catches_every_path():
    assert chosen([route("r", [rule("all")])], path="/anything") == "all"


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/v1", "v1"), ("/v1/", "v1"), ("/v1/models", "v1"), ("/v1x", "root"), ("/v10/models", "root")],
)
def test_path_prefix_matches_on_segment_boundaries(path, expected):
    routes = [route("r", [rule("root", prefix("/")), rule("v1", prefix("/v1/"))])]
    assert chosen(routes, path=path) == expected


def test_exact_path_beats_any_prefix():
    routes = [
        route(
            "r",
            [
                rule("prefix", prefix("/v1/chat/completions")),
                rule("exact", {"path": {"type": "Exact", "value": "/v1/chat/completions"}}),
            ],
        )
    ]
    assert chosen(routes) == "exact"
    assert chosen(routes, path="/v1/chat/completions/x") == "prefix"


def test_longest_prefix_wins_over_rule_order():
    routes = [route("r", [rule("short", prefix("/v1")), rule("long", prefix("/v1/chat"))])]
    assert chosen(routes) == "long"


def test_method_match_beats_header_matches():
    header = {"headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}
    routes = [
        route("r", [rule("headers", prefix("/v1", **header)), rule("method", prefix("/v1", method="POST"))])
    ]
    assert chosen(routes, headers={"a": "1", "b": "2"}) == "method"
    assert chosen(routes, method="GET", headers={"a": "1", "b": "2"}) == "headers"


def test_more_header_matches_win_and_header_names_ignore_case():
    one = {"headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": "m"}]}
    two = {"headers": [*one["headers"], {"name": "x-tenant", "value": "t"}]}
    routes = [route("r", [rule("one", prefix("/", **one)), rule("two", prefix("/", **two))])]
    assert chosen(routes, headers={"x-gateway-model-name": "m", "X-TENANT": "t"}) == "two"
    assert chosen(routes, headers={"X-GATEWAY-MODEL-NAME": "m"}) == "one"
    assert chosen(routes, headers={"x-gateway-model-name": "other"}) is None


def test_header_values_are_case_sensitive():
    match = {"headers": [{"name": "X-Gateway-Model-Name", "value": "meta-llama/Llama-3.1-8B-Instruct"}]}
    routes = [route("r", [rule("model", prefix("/", **match))])]
    assert chosen(routes, headers={"X-Gateway-Model-Name": "meta-llama/llama-3.1-8b-instruct"}) is None


def test_ties_go_to_the_oldest_route_then_to_the_name():
    older = route("b-route", [rule("older", prefix("/"))], created="2026-01-01T00:00:00Z")
    newer = route("a-route", [rule("newer", prefix("/"))], created="2026-01-02T00:00:00Z")
    assert chosen([newer, older]) == "older"
    same_time = route("a-route", [rule("alphabetical", prefix("/"))], created="2026-01-01T00:00:00Z")
    assert chosen([older, same_time]) == "alphabetical"


def test_ties_inside_a_route_go_to_the_first_rule():
    assert chosen([route("r", [rule("first", prefix("/v1")), rule("second", prefix("/v1"))])]) == "first"


def test_query_param_matches():
    match = prefix("/", queryParams=[{"name": "debug", "value": "1"}])
    routes = [route("r", [rule("plain", prefix("/")), rule("debug", match)])]
    assert chosen(routes, query={"debug": "1"}) == "debug"
    assert chosen(routes) == "plain"


def test_routes_for_another_gateway_or_namespace_do_not_attach():
    other_gateway = route("r1", [rule("other")], parent={**PARENT, "name": "other-gateway"})
    other_namespace = route("r2", [rule("foreign")], namespace="team-b")
    assert chosen([other_gateway, other_namespace]) is None


def test_listener_allowed_routes_from_all_admits_other_namespaces():
    gateway = {
        "metadata": {"name": "inference-gateway", "namespace": "default"},
        "spec": {
            "listeners": [{"name": "http", "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}]
        },
    }
    (listener,) = listeners_of(gateway)
    foreign = route("r", [rule("foreign")], namespace="team-b", parent={**PARENT, "namespace": "default"})
    assert chosen([foreign], listener=listener) == "foreign"
    assert chosen([foreign]) is None  # the default, Same, does not


def test_section_name_and_port_select_the_listener():
    gateway = {
        "metadata": {"name": "inference-gateway", "namespace": "default"},
        "spec": {"listeners": [{"name": "http", "port": 80}, {"name": "alt", "port": 8080}]},
    }
    http, alt = listeners_of(gateway)
    routes = [route("r", [rule("alt-only")], parent={**PARENT, "sectionName": "alt"})]
    assert chosen(routes, listener=alt) == "alt-only"
    assert chosen(routes, listener=http) is None
    by_port = [route("r", [rule("port-80")], parent={**PARENT, "port": 80})]
    assert chosen(by_port, listener=http) == "port-80"
    assert chosen(by_port, listener=alt) is None


def test_a_route_rejected_by_its_controller_is_not_served():
    rejected = route("r", [rule("x")])
    rejected["status"] = {
        "parents": [
            {
                "parentRef": PARENT,
                "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}],
            }
        ]
    }
    assert chosen([rejected]) is None
    rejected["status"]["parents"][0]["conditions"][0]["status"] = "True"
    assert chosen([rejected]) == "x"


def test_route_hostnames_must_match_the_host_header():
    routes = [route("r", [rule("api")], hostnames=["api.example.com", "*.models.example.com"])]
    assert chosen(routes, host="api.example.com:80") == "api"
    assert chosen(routes, host="llama.models.example.com") == "api"
    assert chosen(routes, host="10.0.0.1") is None
