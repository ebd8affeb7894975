"""Reading the cluster's objects: a thin view over the ObjectStore plus predicates on pods and conditions."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

POD = ("v1", "Pod")
SERVICE = ("v1", "Service")
NAMESPACE = ("v1", "Namespace")
DEPLOYMENT = ("apps/v1", "Deployment")
GATEWAY = ("gateway.networking.k8s.io/v1", "Gateway")
HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
INFERENCE_POOL = ("inference.networking.k8s.io/v1", "InferencePool")
GCP_BACKEND_POLICY = ("networking.gke.io/v1", "GCPBackendPolicy")
GCP_ROUTING_EXTENSION = ("networking.gke.io/v1", "GCPRoutingExtension")


async def _resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class StoreView:
    """Async reads of the cluster's ObjectStore (whose methods may be plain or coroutine functions)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def get(self, kind: tuple[str, str], namespace: str | None, name: str) -> dict | None:
        return await _resolved(self._store.get(kind[0], kind[1], namespace, name))

    async def list(
        self, kind: tuple[str, str], namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict]:
        return list(
            await _resolved(
                self._store.list(
                    kind[0], kind[1], namespace=namespace, label_selector=dict(labels) if labels else None
                )
            )
        )


def condition_true(obj: dict, condition_type: str) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition.get("status") == "True"
    return False


def pod_serving(pod: dict) -> bool:
    """Ready, addressed and not being deleted: what an Endpoints controller would publish."""
    status = pod.get("status") or {}
    return (
        bool(status.get("podIP"))
        and status.get("phase", "Running") == "Running"
        and not pod["metadata"].get("deletionTimestamp")
        and condition_true(pod, "Ready")
    )


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def key_of(obj: dict) -> tuple[str, str]:
    metadata = obj["metadata"]
    return metadata.get("namespace") or "", metadata["name"]
