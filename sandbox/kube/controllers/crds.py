"""CustomResourceDefinitions become Established (and their names accepted) after a short delay;
the CRDs GKE manages itself reach the cluster some time after it is RUNNING.

GKE installs the Gateway API and Inference Extension GA CRDs itself from 1.34.0-gke.1626000 on
(https://llm-d.ai/docs/dev/resources/gateway/install-crds: "GKE automatically installs all GA CRDs
for Gateway API and Gateway API Inference Extension on GKE versions 1.34.0-gke.1626000 or later").
They are put in place by a controller in the running cluster, not with the control plane itself
(without a Gateway API channel "the GKE Gateway Controller does not install the necessary CRDs and
the GatewayClasses", https://github.com/hashicorp/terraform-provider-google/pull/13233), so they can
appear after the cluster is RUNNING. How long after is not published: the profile's
`managed_crds_delay` is an assumption, and the "managed_crds_late" behaviour stretches it.
Only the InferencePool CRD is delayed here, the one whose version gate the DAG depends on.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kube.builtin import gke_managed_crds
from sandbox.kube.controllers.base import ControlledCluster, Controller
from sandbox.kube.controllers.conditions import condition, is_true

CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
# Each use of the "managed_crds_late" behaviour postpones the GKE-managed CRDs by this much, at least.
LATE_STEP_SECONDS = 1.0


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

    def __init__(self, cluster: ControlledCluster) -> None:
        super().__init__(cluster)
        self._pending: set[str] = set()

    def start(self) -> None:
        super().start()
        # The control plane starts as the cluster turns RUNNING; GKE's own CRDs come later.
        if not gke_managed_crds(self.cluster.version):
            return
        if self.profile.managed_crds_delay > 0:
            self.after(self.profile.managed_crds_delay, self._install_managed_crds)
        else:
            self._install_managed_crds()

    def _install_managed_crds(self) -> None:
        if self.behaviour("managed_crds_late"):
            self.after(max(self.profile.managed_crds_delay, LATE_STEP_SECONDS), self._install_managed_crds)
            return
        for crd in gke_managed_crds(self.cluster.version):
            if self.store.get(*CRD, None, crd["metadata"]["name"]) is not None:
                continue  # someone applied it first (e.g. the full CRD set)
            created = self.store.create(crd)
            self.store.update_status(*CRD, None, created["metadata"]["name"], established_status(created))

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
