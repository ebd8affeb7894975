"""CustomResourceDefinitions become Established (and their names accepted) after a short delay."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kube.controllers.base import Controller
from sandbox.kube.controllers.conditions import condition, is_true

CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def established_status(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd.get("spec") or {}
    previous = (crd.get("status") or {}).get("conditions")
    return {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        "conditions": [
            condition(previous, "NamesAccepted", True, "NoConflicts", "no conflicts found"),
            condition(
                previous, "Established", True, "InitialNamesAccepted", "the initial names have been accepted"
            ),
        ],
    }


class CrdController(Controller):
    primary = CRD

    def __init__(self, cluster) -> None:  # noqa: ANN001
        super().__init__(cluster)
        self._pending: set[str] = set()

    def reconcile(self, crd: dict[str, Any]) -> None:
        uid = crd["metadata"]["uid"]
        if is_true(crd, "Established") and established_status(crd)["acceptedNames"] == crd["status"].get(
            "acceptedNames"
        ):
            return
        if uid in self._pending:
            return
        self._pending.add(uid)
        self.after(self.profile.crd_established, lambda: self._establish(crd["metadata"]["name"], uid))

    def _establish(self, name: str, uid: str) -> None:
        self._pending.discard(uid)
        crd = self.store.get(*CRD, None, name)
        if crd is not None and crd["metadata"]["uid"] == uid:
            self.store.update_status(*CRD, None, name, established_status(crd))
