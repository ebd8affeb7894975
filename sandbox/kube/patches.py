"""The three classic PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kube.status import KubeApiError, bad_request

# Strategic merge: lists under these field names hold maps merged by the given key, as the builtin
# Go types declare with `patchMergeKey`; every other list is replaced whole.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "hostAliases": ("ip",),
}


def merge_key_for(field: str, items: list[Any]) -> str | None:
    """The merge key of a list field, if every item is a map carrying it."""
    for candidate in MERGE_KEYS.get(field, ()):
        if items and all(isinstance(item, dict) and candidate in item for item in items):
            return candidate
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch that merges known lists of named items by their key instead of replacing them."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # directives such as $setElementOrder only order lists; ordering is not modelled
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(key, result[key], value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_keyed_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    merge_key = merge_key_for(field, [*current, *patch])
    if merge_key is None:
        return [item for item in copy.deepcopy(patch) if not _is_delete_directive(item)]
    merged = copy.deepcopy(current)
    positions = {item[merge_key]: index for index, item in enumerate(merged)}
    removed = set()
    for item in patch:
        if _is_delete_directive(item):
            removed.add(item[merge_key])
        elif item[merge_key] in positions:
            index = positions[item[merge_key]]
            merged[index] = strategic_merge_patch(merged[index], item)
        else:
            positions[item[merge_key]] = len(merged)
            merged.append(copy.deepcopy(item))
    return [item for item in merged if item[merge_key] not in removed]


def _is_delete_directive(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


# -- JSON patch ------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}: it must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> Any:
    current = doc
    for part in parts:
        try:
            current = current[int(part)] if isinstance(current, list) else current[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise bad_request(f"JSON patch path {path!r} does not exist") from None
    return current


def _list_index(container: list[Any], part: str, path: str, *, inserting: bool) -> int:
    if inserting and part == "-":
        return len(container)
    try:
        index = int(part)
    except ValueError:
        raise bad_request(f"JSON patch path {path!r}: {part!r} is not a list index") from None
    if not 0 <= index <= len(container) - (0 if inserting else 1):
        raise bad_request(f"JSON patch path {path!r}: index {index} is out of range")
    return index


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _container(doc, parts[:-1], path)
    if isinstance(parent, list):
        parent.insert(_list_index(parent, parts[-1], path, inserting=True), copy.deepcopy(value))
    elif isinstance(parent, dict):
        parent[parts[-1]] = copy.deepcopy(value)
    else:
        raise bad_request(f"JSON patch path {path!r}: parent is not an object or a list")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise bad_request("JSON patch cannot remove the whole document")
    parent = _container(doc, parts[:-1], path)
    if isinstance(parent, list):
        return doc, parent.pop(_list_index(parent, parts[-1], path, inserting=False))
    if isinstance(parent, dict) and parts[-1] in parent:
        return doc, parent.pop(parts[-1])
    raise bad_request(f"JSON patch path {path!r} does not exist")


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            doc = _add(doc, path, operation.get("value"))
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, operation.get("value"))
        elif op in ("move", "copy"):
            source = operation.get("from", "")
            value = copy.deepcopy(_container(doc, _pointer(source), source))
            if op == "move":
                doc, value = _remove(doc, source)
            doc = _add(doc, path, value)
        elif op == "test":
            if _container(doc, _pointer(path), path) != operation.get("value"):
                raise KubeApiError(422, "Invalid", f"JSON patch test failed at {path!r}")
        else:
            raise bad_request(f"unknown JSON patch operation {op!r}")
    return doc
