"""`meta.k8s.io/v1 Table` answers, so `kubectl get` prints the columns it prints on a real cluster."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.kube.resources import ResourceType
from sandbox.kube.status import bad_request

Column = tuple[str, str, int, Callable[[dict[str, Any]], Any]]  # name, type, priority, cell


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def _age(obj: dict[str, Any]) -> str:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int(
        (
            datetime.now(UTC) - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        ).total_seconds()
    )
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m" if seconds < 36000 else f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _condition(obj: dict[str, Any], type_: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return condition.get("status", "Unknown")
    return "Unknown"


def _pod_status(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    return status.get("phase", "Pending")


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _restarts(pod: dict[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _deployment_ready(deployment: dict[str, Any]) -> str:
    status = deployment.get("status") or {}
    return f"{status.get('readyReplicas', 0)}/{(deployment.get('spec') or {}).get('replicas', 1)}"


def _service_ports(service: dict[str, Any]) -> str:
    ports = (service.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _gateway_address(gateway: dict[str, Any]) -> str:
    addresses = (gateway.get("status") or {}).get("addresses") or []
    return addresses[0].get("value", "") if addresses else ""


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, _age)

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("v1", "Pod"): [
        NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "integer", 0, _restarts),
        AGE,
        ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    ("apps/v1", "Deployment"): [
        NAME,
        ("Ready", "string", 0, _deployment_ready),
        ("Up-to-date", "integer", 0, lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
        ("Available", "integer", 0, lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        AGE,
    ],
    ("apps/v1", "ReplicaSet"): [
        NAME,
        ("Desired", "integer", 0, lambda o: (o.get("spec") or {}).get("replicas", 0)),
        ("Current", "integer", 0, lambda o: (o.get("status") or {}).get("replicas", 0)),
        ("Ready", "integer", 0, lambda o: (o.get("status") or {}).get("readyReplicas", 0)),
        AGE,
    ],
    ("v1", "Service"): [
        NAME,
        ("Type", "string", 0, lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: (o.get("spec") or {}).get("clusterIP", "")),
        ("External-IP", "string", 0, lambda _: "<none>"),
        ("Port(s)", "string", 0, _service_ports),
        AGE,
    ],
    ("gateway.networking.k8s.io/v1", "Gateway"): [
        NAME,
        ("Class", "string", 0, lambda o: (o.get("spec") or {}).get("gatewayClassName", "")),
        ("Address", "string", 0, _gateway_address),
        ("Programmed", "string", 0, lambda o: _condition(o, "Programmed")),
        AGE,
    ],
    ("gateway.networking.k8s.io/v1", "GatewayClass"): [
        NAME,
        ("Controller", "string", 0, lambda o: (o.get("spec") or {}).get("controllerName", "")),
        ("Accepted", "string", 0, lambda o: _condition(o, "Accepted")),
        AGE,
    ],
    ("v1", "Event"): [
        ("Last Seen", "string", 0, lambda o: o.get("lastTimestamp", "")),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        (
            "Object",
            "string",
            0,
            lambda o: (
                f"{(o.get('involvedObject') or {}).get('kind', '').lower()}/"
                f"{(o.get('involvedObject') or {}).get('name', '')}"
            ),
        ),
        ("Message", "string", 0, lambda o: o.get("message", "")),
    ],
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): [
        NAME,
        ("Created At", "date", 0, lambda o: o["metadata"].get("creationTimestamp", "")),
    ],
}


def _row_object(obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    """What a row carries, per the `includeObject` query parameter (k8s.io/apiserver v0.32.4
    pkg/endpoints/handlers/response.go `asTable`): the metadata by default, the whole object for
    "Object" (what `kubectl get --sort-by` asks for), nothing for "None"."""
    if include_object == "Object":
        return obj
    if include_object in ("Metadata", ""):
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    if include_object == "None":
        return None
    raise bad_request(f"unrecognized includeObject value: {include_object!r}")


def table(
    resource_type: ResourceType,
    objects: list[dict[str, Any]],
    resource_version: str,
    include_object: str = "",
) -> dict[str, Any]:
    columns = COLUMNS.get((resource_type.api_version, resource_type.kind), [NAME, AGE])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": priority,
            }
            for name, type_, priority, _ in columns
        ],
        "rows": [
            {
                "cells": [cell(obj) for _, _, _, cell in columns],
                "object": _row_object(obj, include_object),
            }
            for obj in objects
        ],
    }
