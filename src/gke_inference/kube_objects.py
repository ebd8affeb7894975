"""Pure helpers over Kubernetes objects as dicts; importing them loads no client library."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def object_ref(obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (or ``Kind/name`` when cluster-scoped), for logs and XCom."""
    metadata = obj.get("metadata") or {}
    parts = [obj.get("kind", "?"), metadata.get("namespace"), metadata.get("name", "?")]
    return "/".join(p for p in parts if p)


def find_condition(obj: Mapping[str, Any], condition_type: str) -> dict | None:
    for condition in ((obj.get("status") or {}).get("conditions")) or []:
        if condition.get("type") == condition_type:
            return condition
    return None


def condition_status(obj: Mapping[str, Any], condition_type: str) -> str | None:
    """The status ("True"/"False"/"Unknown") of a status condition, or None when absent."""
    return (find_condition(obj, condition_type) or {}).get("status")


def format_label_selector(selector: Mapping[str, str] | str | None) -> str | None:
    """``{"app": "x", "tier": "y"}`` -> ``"app=x,tier=y"``; strings pass through."""
    if selector is None or isinstance(selector, str):
        return selector or None
    return ",".join(f"{key}={value}" for key, value in selector.items()) or None
