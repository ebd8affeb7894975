"""The `scale` subresource: an autoscaling/v1 Scale view of an object's spec.replicas."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kube.status import invalid


def _selector_text(obj: dict[str, Any]) -> str:
    match_labels = (((obj.get("spec") or {}).get("selector")) or {}).get("matchLabels") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def scale_view(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace"),
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata.get("creationTimestamp"),
        },
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {
            "replicas": int((obj.get("status") or {}).get("replicas", 0)),
            "selector": _selector_text(obj),
        },
    }


def with_replicas(obj: dict[str, Any], scale: dict[str, Any], resource: str) -> dict[str, Any]:
    """`obj` with the replica count a written Scale asks for (its resourceVersion guards the write)."""
    replicas = (scale.get("spec") or {}).get("replicas")
    name = obj["metadata"]["name"]
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            resource,
            name,
            "apps",
            f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative integer",
        )
    updated = copy.deepcopy(obj)
    updated["spec"]["replicas"] = replicas
    sent_version = (scale.get("metadata") or {}).get("resourceVersion")
    updated["metadata"]["resourceVersion"] = sent_version or obj["metadata"]["resourceVersion"]
    return updated
