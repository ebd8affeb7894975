"""Which resource types a cluster serves: the builtin table plus whatever established CRDs add."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    has_scale: bool = False  # a `scale` subresource over spec.replicas (Deployments, ReplicaSets)
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    from_crd: str | None = field(default=None, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types one CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    crd_name = crd["metadata"]["name"]
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                has_status="status" in subresources,
                categories=tuple(names.get("categories") or ()),
                from_crd=crd_name,
            )
        )
    return types


class ResourceRegistry:
    """The resource types a cluster currently serves, looked up by URL parts or by apiVersion/kind."""

    def __init__(self, builtin: Iterable[ResourceType]) -> None:
        self._types: list[ResourceType] = list(builtin)

    def all(self) -> list[ResourceType]:
        return list(self._types)

    def by_plural(self, group: str, version: str, plural: str) -> ResourceType | None:
        for resource_type in self._types:
            if (resource_type.group, resource_type.version, resource_type.plural) == (group, version, plural):
                return resource_type
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for resource_type in self._types:
            if resource_type.api_version == api_version and resource_type.kind == kind:
                return resource_type
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Served groups (the core group is "") and their versions, in registration order."""
        groups: dict[str, list[str]] = {}
        for resource_type in self._types:
            versions = groups.setdefault(resource_type.group, [])
            if resource_type.version not in versions:
                versions.append(resource_type.version)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types if t.group == group and t.version == version]

    def serve_crd(self, crd: dict[str, Any]) -> None:
        self.withdraw_crd(crd["metadata"]["name"])
        self._types.extend(types_from_crd(crd))

    def withdraw_crd(self, crd_name: str) -> list[ResourceType]:
        withdrawn = [t for t in self._types if t.from_crd == crd_name]
        self._types = [t for t in self._types if t.from_crd != crd_name]
        return withdrawn
