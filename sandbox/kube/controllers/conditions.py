"""Status conditions in the Kubernetes convention (lastTransitionTime moves only on a status change)."""

from __future__ import annotations

from typing import Any

from sandbox.kube.store import now_timestamp


def condition(
    previous: list[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """A condition entry; keeps the previous lastTransitionTime when the status did not change."""
    text = status if isinstance(status, str) else ("True" if status else "False")
    earlier = next((c for c in previous or [] if c.get("type") == type_), None)
    transition = (
        earlier["lastTransitionTime"] if earlier and earlier.get("status") == text else now_timestamp()
    )
    entry: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        entry["observedGeneration"] = observed_generation
    return entry


def is_true(obj: dict[str, Any], type_: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)
