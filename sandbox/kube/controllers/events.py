"""Kubernetes Events the simulated controllers emit, so `kubectl describe` tells the story."""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.kube.store import ObjectStore, now_timestamp

EVENT = ("v1", "Event")


class EventRecorder:
    def __init__(self, store: ObjectStore, component: str) -> None:
        self._store = store
        self._component = component

    def record(
        self,
        obj: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        *,
        again: bool = False,
        about: str = "",
    ) -> None:
        """Emit an event about `obj`. A repeat of the same reason and message only counts up when
        `again` (a new occurrence, like one more restart), so reconciling twice stays quiet.
        `about` tells apart events of one reason on different parts (a container's name)."""
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") or "default"
        digest = hashlib.sha256(f"{metadata['uid']}/{reason}/{about}".encode()).hexdigest()[:16]
        name = f"{metadata['name']}.{digest}"
        now = now_timestamp()
        existing = self._store.get(*EVENT, namespace, name)
        if existing is not None:
            if existing.get("message") == message and not again:
                return
            existing.update(message=message, lastTimestamp=now, count=existing.get("count", 1) + 1)
            existing["metadata"].pop("resourceVersion", None)
            self._store.replace(existing)
            return
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": metadata["name"],
                "namespace": metadata.get("namespace"),
                "uid": metadata["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._store.create(event)
