"""Watch streams: which changes a watcher sees, and how they are written.

Like the real API server, a watch with a selector reports an object entering the selection as
ADDED and an object leaving it (a label changed) as DELETED, not as MODIFIED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.kube.resources import ResourceType
from sandbox.kube.selectors import FieldRequirement, Requirement, fields_match, labels_match

CLOSE = ("CLOSE", {})  # queued by the server when it shuts down
Event = tuple[str, dict[str, Any]]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _revision(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("resourceVersion", 0))


class WatchFilter:
    def __init__(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
    ) -> None:
        self._resource_type = resource_type
        self._namespace = namespace
        self._labels = labels
        self._fields = fields
        self._selected: set[tuple[str, str]] = set()

    def in_scope(self, obj: dict[str, Any]) -> bool:
        return (
            obj.get("apiVersion") == self._resource_type.api_version
            and obj.get("kind") == self._resource_type.kind
            and (self._namespace is None or obj["metadata"].get("namespace") == self._namespace)
        )

    def selects(self, obj: dict[str, Any]) -> bool:
        return self.in_scope(obj) and labels_match(self._labels, obj) and fields_match(self._fields, obj)

    def start_from_listing(self, current: list[dict[str, Any]]) -> list[Event]:
        """A watch without a resourceVersion: every selected object, as ADDED."""
        self._selected = {_key(obj) for obj in current}
        return [("ADDED", obj) for obj in current]

    def start_after(
        self,
        current: list[dict[str, Any]],
        changes: list[Event],
        earlier: Callable[[str, str], dict[str, Any] | None],
    ) -> list[Event]:
        """A resumed watch: `changes` happened after the client's resourceVersion; `current` is now;
        `earlier(namespace, name)` is an object as it was at that version (None if unknown).

        Objects that changed since are judged by their earlier state when the history still has it,
        else by their state after their first change.
        """
        first_change: dict[tuple[str, str], Event] = {}
        for event_type, obj in changes:
            if self.in_scope(obj):
                first_change.setdefault(_key(obj), (event_type, obj))
        self._selected = {_key(obj) for obj in current if self.selects(obj) and _key(obj) not in first_change}
        for key, (event_type, obj) in first_change.items():
            if event_type == "ADDED":
                continue
            before = earlier(*key) or obj
            if self.selects(before):
                self._selected.add(key)
        translated = []
        for event_type, obj in changes:
            seen_as = self.translate(event_type, obj)
            if seen_as is not None:
                translated.append((seen_as, obj))
        return translated

    def translate(self, event_type: str, obj: dict[str, Any]) -> str | None:
        """How this watcher sees a change, or None when it does not concern it."""
        if not self.in_scope(obj):
            return None
        key = _key(obj)
        was_selected = key in self._selected
        if event_type == "DELETED":
            self._selected.discard(key)
            return "DELETED" if was_selected or self.selects(obj) else None
        if self.selects(obj):
            self._selected.add(key)
            return "MODIFIED" if was_selected else "ADDED"
        if was_selected:
            self._selected.discard(key)
            return "DELETED"
        return None


async def write_event(response: web.StreamResponse, event_type: str, obj: dict[str, Any]) -> None:
    await response.write((json.dumps({"type": event_type, "object": obj}) + "\n").encode())


async def stream(
    response: web.StreamResponse,
    queue: asyncio.Queue[Event],
    backlog: list[Event],
    watch_filter: WatchFilter,
    render: Callable[[dict[str, Any]], dict[str, Any]],
    timeout: float,
) -> None:
    """Write the backlog, then live changes, until the timeout, a disconnect or server shutdown."""
    sent_through = 0
    for event_type, obj in backlog:
        await write_event(response, event_type, render(obj))
        sent_through = max(sent_through, _revision(obj))
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        async with asyncio.timeout(timeout):
            while True:
                event_type, obj = await queue.get()
                if (event_type, obj) == CLOSE:
                    return
                if _revision(obj) <= sent_through:
                    continue
                seen_as = watch_filter.translate(event_type, obj)
                if seen_as is not None:
                    await write_event(response, seen_as, render(obj))
                    sent_through = _revision(obj)
