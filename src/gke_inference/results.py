"""What every task returns: the objects it touched, grouped by what happened to them.

One shape for all tasks, so the run report is a fold over their XComs: a dict whose outcome keys
(below) hold lists of object refs, plus whatever the task reports besides under its own keys
(a check's reply, a cluster's version). An outcome with nothing in it is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CREATED, UPDATED, UNCHANGED, DELETED = "created", "updated", "unchanged", "deleted"
# A delete that had nothing to do: already gone, or not the DAG's to delete.
ABSENT, NOT_OWNED = "absent", "not_owned"
OUTCOMES = (CREATED, UPDATED, UNCHANGED, DELETED, ABSENT, NOT_OWNED)


def result(
    *,
    created: Iterable[str] = (),
    updated: Iterable[str] = (),
    unchanged: Iterable[str] = (),
    deleted: Iterable[str] = (),
    absent: Iterable[str] = (),
    not_owned: Iterable[str] = (),
    **details: Any,
) -> dict[str, Any]:
    """A task's result: ``result(created=["Network/vpc"], self_link=...)``."""
    lists = zip(OUTCOMES, (created, updated, unchanged, deleted, absent, not_owned), strict=True)
    return {**{name: list(refs) for name, refs in lists if refs}, **details}


def one(outcome: str, ref: str, **details: Any) -> dict[str, Any]:
    """The result of a task that touched one object: ``one(CREATED, "Cluster/us-central1/c")``."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    return result(**{outcome: [ref]}, **details)


def created_or_found(created: bool, ref: str, **details: Any) -> dict[str, Any]:
    """The result of an ensure: the object is created, or it was there (unchanged)."""
    return one(CREATED if created else UNCHANGED, ref, **details)


def summarize(outcomes: Iterable[Any]) -> dict[str, list[str]]:
    """A task's result from per-object outcomes, each with ``.action`` (an outcome above) and
    ``.ref`` (the Kubernetes hook's ApplyResult and DeleteResult), refs kept in order."""
    refs: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.action not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome.action!r}")
        refs.setdefault(outcome.action, []).append(outcome.ref)
    return refs


def gcp_ref(kind: str, *path: str) -> str:
    """``Kind/part/name`` for a GCP resource, as Kubernetes refs are ``Kind/namespace/name``."""
    return "/".join((kind, *path))


def fold(results: Iterable[Any]) -> dict[str, list[str]]:
    """Every outcome over a run's results, each ref once, sorted. A ref some task created and a
    later task applied again (body routing replaces the route) counts as created, not as found."""
    seen: dict[str, set[str]] = {name: set() for name in OUTCOMES}
    for task_result in results:
        if isinstance(task_result, Mapping):
            for name in OUTCOMES:
                refs = task_result.get(name)
                if isinstance(refs, list | tuple):
                    seen[name].update(str(ref) for ref in refs)
    seen[UPDATED] -= seen[CREATED]
    seen[UNCHANGED] -= seen[CREATED] | seen[UPDATED]
    return {name: sorted(refs) for name, refs in seen.items()}
