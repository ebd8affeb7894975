"""Label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors (=, ==, !=)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.kube.status import bad_request

_SET_REQUIREMENT = re.compile(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$")
_EQUALITY = re.compile(r"^([^\s!=]+)\s*(==|=|!=)\s*([^\s]*)$")
_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists" ("=" and "==" become "in", "!=" becomes "notin")
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _check_key(key: str, selector: str) -> str:
    if not _KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}")
    return key


def parse_label_selector(selector: str | None) -> list[Requirement]:
    if not selector:
        return []
    requirements = []
    for part in _split_top_level(selector):
        if match := _SET_REQUIREMENT.match(part):
            key, operator, values = match.groups()
            value_set = frozenset(v.strip() for v in values.split(",") if v.strip())
            requirements.append(Requirement(_check_key(key, selector), operator, value_set))
        elif match := _EQUALITY.match(part):
            key, operator, value = match.groups()
            requirements.append(
                Requirement(
                    _check_key(key, selector), "notin" if operator == "!=" else "in", frozenset({value})
                )
            )
        elif part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), selector), "!exists"))
        else:
            requirements.append(Requirement(_check_key(part, selector), "exists"))
    return requirements


def equality_requirements(labels: Mapping[str, str] | None) -> list[Requirement]:
    return [Requirement(key, "in", frozenset({value})) for key, value in (labels or {}).items()]


def labels_match(requirements: list[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    value: str
    negated: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for step in self.path:
            current = current.get(step) if isinstance(current, Mapping) else None
        actual = "" if current is None else str(current)
        return (actual != self.value) if self.negated else (actual == self.value)


def parse_field_selector(selector: str | None) -> list[FieldRequirement]:
    if not selector:
        return []
    requirements = []
    for part in _split_top_level(selector):
        match = _EQUALITY.match(part)
        if match is None:
            raise bad_request(f"invalid field selector {selector!r}: expected field=value or field!=value")
        field, operator, value = match.groups()
        requirements.append(FieldRequirement(tuple(field.split(".")), value, operator == "!="))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)
