"""The object store of one cluster: objects, resourceVersions, and the change feed watches read."""

from __future__ import annotations

import asyncio
import copy
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.kube.selectors import (
    FieldRequirement,
    Requirement,
    equality_requirements,
    fields_match,
    labels_match,
)
from sandbox.kube.status import already_exists, bad_request, conflict, gone, not_found

ObjectKey = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name
Event = tuple[str, dict[str, Any]]
# (resource plural, API group) for error messages; the cluster plugs in its registry.
Describer = Callable[[str, str], tuple[str, str]]

HISTORY_LIMIT = 5000


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Kubernetes draws generated name suffixes from an alphabet without vowels, so they never spell words.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def _default_describer(api_version: str, kind: str) -> tuple[str, str]:
    group = api_version.rpartition("/")[0]
    return f"{kind.lower()}s", group


def _key(api_version: str, kind: str, namespace: str | None, name: str) -> ObjectKey:
    return (api_version, kind, namespace or "", name)


def object_key(obj: dict[str, Any]) -> ObjectKey:
    metadata = obj["metadata"]
    return _key(obj["apiVersion"], obj["kind"], metadata.get("namespace"), metadata["name"])


def _generation_relevant(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ObjectStore:
    """All objects of one cluster. Everything runs on the sandbox loop; callers get deep copies."""

    def __init__(self, describe: Describer = _default_describer) -> None:
        self._describe = describe
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._revision = 0
        self._history: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=HISTORY_LIMIT)
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._observers: list[Callable[[str, dict[str, Any]], None]] = []

    # -- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self._objects.get(_key(api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        return self.select(api_version, kind, namespace, equality_requirements(label_selector))

    def select(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
    ) -> list[dict[str, Any]]:
        found = []
        for (obj_api_version, obj_kind, obj_namespace, _), obj in self._objects.items():
            if (obj_api_version, obj_kind) != (api_version, kind):
                continue
            if namespace is not None and obj_namespace != namespace:
                continue
            if labels_match(labels or [], obj) and fields_match(fields or [], obj):
                found.append(copy.deepcopy(obj))
        found.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return found

    # -- writes --------------------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name"):
            if not metadata.get("generateName"):
                raise bad_request("metadata.name or metadata.generateName is required")
            metadata["name"] = metadata["generateName"] + random_suffix(5)
        key = object_key(obj)
        if key in self._objects:
            resource, group = self._plural_and_group(obj)
            raise already_exists(resource, metadata["name"], group)
        metadata.pop("resourceVersion", None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_timestamp()
        metadata["generation"] = 1
        return self._commit("ADDED", key, obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of an existing object; a stale metadata.resourceVersion is a Conflict."""
        obj = copy.deepcopy(obj)
        key = object_key(obj)
        current = self._objects.get(key)
        resource, group = self._plural_and_group(obj)
        name = obj["metadata"]["name"]
        if current is None:
            raise not_found(resource, name, group)
        sent_version = obj["metadata"].get("resourceVersion")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise conflict(
                resource,
                name,
                group,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        metadata = obj["metadata"]
        for preserved in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if preserved in current["metadata"]:
                metadata[preserved] = current["metadata"][preserved]
        if _generation_relevant(obj) != _generation_relevant(current):
            metadata["generation"] = current["metadata"].get("generation", 1) + 1
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        if obj == current:
            return copy.deepcopy(current)  # a no-op write does not bump the resourceVersion
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            # The last finalizer is gone from an object being deleted: the API server removes it.
            # https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
            removed = self._commit("DELETED", key, obj)
            self._delete_dependents(removed)
            return removed
        return self._commit("MODIFIED", key, obj)

    def update_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        key = _key(api_version, kind, namespace, name)
        current = self._objects.get(key)
        if current is None:
            resource, group = self._describe(api_version, kind)
            raise not_found(resource, name, group)
        if current.get("status") == status:
            return copy.deepcopy(current)
        updated = copy.deepcopy(current)
        updated["status"] = copy.deepcopy(status)
        return self._commit("MODIFIED", key, updated)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object, with the objects it owns and, for a Namespace, its contents.

        An object with finalizers is only marked (deletionTimestamp) and stays until whoever set
        them removes the last one (see `replace`); `is_pending_deletion` tells the two apart.
        """
        key = _key(api_version, kind, namespace, name)
        if key not in self._objects:
            resource, group = self._describe(api_version, kind)
            raise not_found(resource, name, group)
        return self._delete_or_mark(key)

    def is_pending_deletion(self, obj: dict[str, Any]) -> bool:
        """Whether `obj` is still stored, waiting for its finalizers."""
        return object_key(obj) in self._objects

    # -- change feed ---------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def observe(self, observer: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `observer(event_type, obj)` synchronously on every change (before subscribers run)."""
        self._observers.append(observer)

    def events_since(self, resource_version: int) -> list[Event]:
        """Changes after `resource_version`, oldest first; 410 Gone when they are no longer kept."""
        if self._history and resource_version < self._history[0][0] - 1:
            raise gone(f"too old resource version: {resource_version} ({self._history[0][0] - 1})")
        if resource_version > self._revision:
            return []
        return [
            (event_type, copy.deepcopy(obj)) for rv, event_type, obj in self._history if rv > resource_version
        ]

    def version_at(
        self, api_version: str, kind: str, namespace: str | None, name: str, revision: int
    ) -> dict[str, Any] | None:
        """The object as it was at `revision`, if the change history still shows it (else None)."""
        key = _key(api_version, kind, namespace, name)
        for rv, event_type, obj in reversed(self._history):
            if rv <= revision and object_key(obj) == key:
                return None if event_type == "DELETED" else copy.deepcopy(obj)
        return None

    def compact(self, revision: int) -> None:
        """Forget changes up to `revision`, as etcd compaction does; older watches then get 410 Gone."""
        while self._history and self._history[0][0] <= revision:
            self._history.popleft()

    # -- internals -----------------------------------------------------------------------------

    def _plural_and_group(self, obj: dict[str, Any]) -> tuple[str, str]:
        return self._describe(obj["apiVersion"], obj["kind"])

    def _commit(self, event_type: str, key: ObjectKey, obj: dict[str, Any]) -> dict[str, Any]:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if event_type == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._history.append((self._revision, event_type, obj))
        for observer in list(self._observers):
            observer(event_type, copy.deepcopy(obj))
        for queue in list(self._subscribers):
            queue.put_nowait((event_type, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _remove(self, key: ObjectKey) -> dict[str, Any]:
        obj = copy.deepcopy(self._objects[key])
        return self._commit("DELETED", key, obj)

    def _delete_dependents(self, deleted: dict[str, Any]) -> None:
        uid = deleted["metadata"]["uid"]
        namespace_deleted = deleted["kind"] == "Namespace" and deleted["apiVersion"] == "v1"
        for key, obj in list(self._objects.items()):
            if key not in self._objects:
                continue  # already removed by an earlier cascade in this loop
            owned = any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
            in_namespace = namespace_deleted and key[2] == deleted["metadata"]["name"]
            if owned or in_namespace:
                self._delete_or_mark(key)

    def _delete_or_mark(self, key: ObjectKey) -> dict[str, Any]:
        """Remove the object, or, while it has finalizers, set its deletionTimestamp once."""
        current = self._objects[key]
        metadata = current["metadata"]
        if not metadata.get("finalizers"):
            deleted = self._remove(key)
            self._delete_dependents(deleted)
            return deleted
        if metadata.get("deletionTimestamp"):
            return copy.deepcopy(current)
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = now_timestamp()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        return self._commit("MODIFIED", key, marked)
