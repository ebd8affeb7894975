"""How a live object differs from what the DAG would make of it: a pure field comparison.

Only the fields the desired object sets are compared; whatever the server fills in besides
(uid, status, defaults, its own labels) is ignored, as ``kubectl diff`` and server-side apply do.
Importing this module loads no client library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

VALUE_CHARS = 60


class Absent:
    """A field the live object does not have."""

    def __repr__(self) -> str:
        return "absent"


ABSENT = Absent()


class Difference(NamedTuple):
    """One field whose live value is not the desired one."""

    field: str
    have: Any
    want: Any

    def __str__(self) -> str:
        return f"{self.field}: {_short(self.have)} -> {_short(self.want)}"


def differences(want: Any, have: Any, field: str = "") -> list[Difference]:
    """Every field ``want`` sets that ``have`` holds differently (``have`` may set more)."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [Difference(field, have, want)] if field else _all_absent(want)
        return [
            found
            for key, value in want.items()
            for found in differences(value, have.get(key, ABSENT), _join(field, key))
        ]
    if isinstance(want, list | tuple):
        return _list_differences(list(want), have, field)
    if _same_scalar(want, have):
        return []
    return [Difference(field, have, want)]


def _all_absent(want: Mapping) -> list[Difference]:
    return [Difference(str(key), ABSENT, value) for key, value in want.items()]


def _list_differences(want: list, have: Any, field: str) -> list[Difference]:
    if not isinstance(have, list | tuple) or len(have) != len(want):
        return [Difference(field, have, want)]
    # Kubernetes merges lists of named items (containers, ports, env) by name, not by position.
    if _all_named(want) and _all_named(have):
        by_name = {item["name"]: item for item in have}
        return [
            found
            for item in want
            for found in differences(item, by_name.get(item["name"], ABSENT), f"{field}[{item['name']}]")
        ]
    return [found for i, item in enumerate(want) for found in differences(item, have[i], f"{field}[{i}]")]


def _all_named(items: list) -> bool:
    return all(isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in items)


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    # Compute answers a reference given by name as its URL (a subnetwork's region:
    # https://cloud.google.com/compute/docs/reference/rest/v1/subnetworks "URL of the region").
    if isinstance(want, str) and isinstance(have, str) and "/" not in want and have.startswith("https://"):
        return have.rstrip("/").rsplit("/", 1)[-1] == want
    # The API server answers quantities and int-or-string fields as strings ("1" for 1).
    numbers = (int, float)
    if isinstance(want, numbers) and not isinstance(want, bool) and isinstance(have, str):
        return str(want) == have
    return want == have and not isinstance(want, bool) and not isinstance(have, bool)


def _join(field: str, key: Any) -> str:
    return f"{field}.{key}" if field else str(key)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def describe(ref: str, found: list[Difference]) -> str:
    """``Kind/ns/name (field: have -> want; ...)`` for the plan's report."""
    return f"{ref} ({'; '.join(str(difference) for difference in found)})"
