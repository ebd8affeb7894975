"""Server-side apply: merge an applied configuration and track field ownership in managedFields.

Field ownership follows the real field manager closely enough for one-manager workflows and for
conflict detection between managers: a manager owns the leaf fields it applied; applying again
without a field removes it unless another manager still owns it; changing a field another manager
owns is a Conflict unless forced (then ownership moves).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from sandbox.kube.patches import merge_key_for, strategic_merge_patch
from sandbox.kube.status import KubeApiError
from sandbox.kube.store import now_timestamp

FieldPath = tuple[str, ...]  # elements "f:<field>" or 'k:{"<mergeKey>":<value>}'

_UNOWNED_TOP_LEVEL = ("apiVersion", "kind", "status")
_UNOWNED_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
)


@dataclass
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    paths: set[FieldPath]
    subresource: str = ""

    def to_json(self) -> dict[str, Any]:
        entry = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": _to_fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


# -- field paths ---------------------------------------------------------------------------------


def _owned_part(obj: dict[str, Any]) -> dict[str, Any]:
    owned = {k: v for k, v in obj.items() if k not in _UNOWNED_TOP_LEVEL}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _UNOWNED_METADATA}
    if metadata:
        owned["metadata"] = metadata
    else:
        owned.pop("metadata", None)
    return owned


def _item_element(merge_key: str, item: dict[str, Any]) -> str:
    return "k:" + json.dumps({merge_key: item[merge_key]}, separators=(",", ":"))


def leaf_paths(obj: dict[str, Any]) -> set[FieldPath]:
    paths: set[FieldPath] = set()

    def walk(node: Any, prefix: FieldPath, field: str | None) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, (*prefix, f"f:{key}"), key)
        elif isinstance(node, list) and field and (merge_key := merge_key_for(field, node)):
            for item in node:
                walk(item, (*prefix, _item_element(merge_key, item)), None)
        else:
            paths.add(prefix)

    walk(_owned_part(obj), (), None)
    paths.discard(())
    return paths


def _step(node: Any, element: str) -> tuple[bool, Any]:
    if element.startswith("f:"):
        if isinstance(node, dict) and element[2:] in node:
            return True, node[element[2:]]
        return False, None
    wanted = json.loads(element[2:])
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return True, item
    return False, None


def value_at(obj: Any, path: FieldPath) -> tuple[bool, Any]:
    node = obj
    for element in path:
        found, node = _step(node, element)
        if not found:
            return False, None
    return True, node


def remove_at(obj: Any, path: FieldPath) -> None:
    found, parent = value_at(obj, path[:-1])
    if not found:
        return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        found_item, item = _step(parent, last)
        if found_item:
            parent.remove(item)


def _to_fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return tree


def _from_fields_v1(tree: dict[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    children = {k: v for k, v in tree.items() if k != "."}
    if not children and prefix:
        paths.add(prefix)
    for element, subtree in children.items():
        paths |= _from_fields_v1(subtree or {}, (*prefix, element))
    return paths


def _render(path: FieldPath) -> str:
    return "".join("." + e[2:] if e.startswith("f:") else "[" + e[2:] + "]" for e in path)


# -- managedFields -------------------------------------------------------------------------------


def read_entries(obj: dict[str, Any] | None) -> list[ManagerEntry]:
    entries = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        entries.append(
            ManagerEntry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                paths=_from_fields_v1(raw.get("fieldsV1") or {}),
                subresource=raw.get("subresource", ""),
            )
        )
    return entries


def write_entries(obj: dict[str, Any], entries: list[ManagerEntry]) -> None:
    kept = [entry.to_json() for entry in entries if entry.paths]
    if kept:
        obj["metadata"]["managedFields"] = kept
    else:
        obj["metadata"].pop("managedFields", None)


def _entry(entries: list[ManagerEntry], manager: str, operation: str, api_version: str) -> ManagerEntry:
    for entry in entries:
        if (entry.manager, entry.operation, entry.subresource) == (manager, operation, ""):
            return entry
    entry = ManagerEntry(manager, operation, api_version, now_timestamp(), set())
    entries.append(entry)
    return entry


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str | None) -> None:
    """After a non-apply write: `manager` owns the fields it changed; nobody owns vanished fields."""
    entries = read_entries(old) if old is not None else []
    new_paths = leaf_paths(new)
    for entry in entries:
        entry.paths &= new_paths
    if manager:
        changed = {p for p in new_paths if old is None or value_at(old, p) != value_at(new, p)}
        if changed:
            for entry in entries:
                entry.paths -= changed
            updater = _entry(entries, manager, "Update", new["apiVersion"])
            updater.paths |= changed
            updater.time = now_timestamp()
    write_entries(new, entries)


def server_side_apply(
    existing: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    describe: tuple[str, str, str],
) -> dict[str, Any]:
    """The object after `manager` applies `applied` onto `existing` (None: the object is new)."""
    applied_paths = leaf_paths(applied)
    if existing is None:
        created = copy.deepcopy(applied)
        created.setdefault("metadata", {}).pop("managedFields", None)
        write_entries(
            created, [ManagerEntry(manager, "Apply", applied["apiVersion"], now_timestamp(), applied_paths)]
        )
        return created

    entries = read_entries(existing)
    _settle_conflicts(existing, applied, applied_paths, entries, manager, force, describe)
    merged = strategic_merge_patch(existing, _owned_part(applied))
    mine = _entry(entries, manager, "Apply", applied["apiVersion"])
    others_paths = set().union(*(e.paths for e in entries if e is not mine))
    _drop_abandoned_fields(merged, mine.paths - applied_paths, applied_paths, others_paths)
    if mine.paths != applied_paths or merged != existing:
        mine.time = now_timestamp()
    mine.paths = applied_paths
    mine.api_version = applied["apiVersion"]
    write_entries(merged, entries)
    return merged


def _settle_conflicts(
    existing: dict[str, Any],
    applied: dict[str, Any],
    applied_paths: set[FieldPath],
    entries: list[ManagerEntry],
    manager: str,
    force: bool,
    describe: tuple[str, str, str],
) -> None:
    conflicts: list[tuple[ManagerEntry, FieldPath]] = []
    for entry in entries:
        if entry.manager == manager:
            continue
        for path in entry.paths & applied_paths:
            if value_at(existing, path) != value_at(applied, path):
                conflicts.append((entry, path))
    if not conflicts:
        return
    if force:
        for entry, path in conflicts:
            entry.paths.discard(path)
        return
    resource, name, group = describe
    lines = [
        f'conflict with "{entry.manager}" using {entry.api_version}: {_render(path)}'
        for entry, path in conflicts
    ]
    raise KubeApiError(
        409,
        "Conflict",
        f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: "
        + "\n".join(lines),
        {"name": name, "kind": resource, "group": group, "causes": [{"reason": "FieldManagerConflict"}]},
    )


def _drop_abandoned_fields(
    merged: dict[str, Any], abandoned: set[FieldPath], applied_paths: set[FieldPath], others: set[FieldPath]
) -> None:
    """Remove fields the manager applied before but not now, at the highest node it alone held."""
    applied_prefixes = {path[:i] for path in applied_paths for i in range(1, len(path) + 1)}
    for path in sorted(abandoned, key=len):
        # metadata itself also holds name, uid and friends, which nobody owns: cut below it.
        shallowest = 2 if path[0] == "f:metadata" else 1
        cut = next(
            (path[:i] for i in range(shallowest, len(path) + 1) if path[:i] not in applied_prefixes), None
        )
        if cut is None:
            continue
        if any(other[: len(cut)] == cut for other in others):
            continue
        remove_at(merged, cut)
