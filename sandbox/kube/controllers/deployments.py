"""Deployments own ReplicaSets (one per pod template), ReplicaSets own Pods."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from sandbox.kube.controllers.base import Controller
from sandbox.kube.controllers.conditions import condition, is_true
from sandbox.kube.controllers.pods import POD
from sandbox.kube.store import random_suffix

DEPLOYMENT = ("apps/v1", "Deployment")
REPLICA_SET = ("apps/v1", "ReplicaSet")
TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(owner: dict[str, Any], candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    return [
        c for c in candidates if any(r.get("uid") == uid for r in c["metadata"].get("ownerReferences") or [])
    ]


def template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character name suffix for a pod template (like the pod-template-hash label)."""
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16], 16)
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[(digest >> (5 * i)) % len(alphabet)] for i in range(10))


def _pod_is_ready(pod: dict[str, Any]) -> bool:
    return is_true(pod, "Ready")


class ReplicaSetController(Controller):
    primary = REPLICA_SET
    watches = (POD,)

    def reconcile(self, replica_set: dict[str, Any]) -> None:
        namespace = replica_set["metadata"]["namespace"]
        pods = owned_by(replica_set, self.store.list(*POD, namespace))
        wanted = int((replica_set.get("spec") or {}).get("replicas", 1))
        for _ in range(wanted - len(pods)):
            pods.append(self._create_pod(replica_set))
        if len(pods) > wanted:
            # Remove unready and newest pods first, as the ReplicaSet controller does.
            doomed = sorted(pods, key=lambda p: (_pod_is_ready(p), p["metadata"]["creationTimestamp"]))
            for pod in doomed[: len(pods) - wanted]:
                self.store.delete(*POD, namespace, pod["metadata"]["name"])
                pods.remove(pod)
        ready = sum(1 for pod in pods if _pod_is_ready(pod))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": replica_set["metadata"].get("generation", 1),
        }
        self.store.update_status(*REPLICA_SET, namespace, replica_set["metadata"]["name"], status)

    def _create_pod(self, replica_set: dict[str, Any]) -> dict[str, Any]:
        template = copy.deepcopy((replica_set.get("spec") or {}).get("template") or {})
        metadata = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{replica_set['metadata']['name']}-{random_suffix(5)}",
                "namespace": replica_set["metadata"]["namespace"],
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "ownerReferences": [owner_reference(replica_set)],
            },
            "spec": template.get("spec") or {},
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        pod["spec"].setdefault("restartPolicy", "Always")
        return self.store.create(pod)


class DeploymentController(Controller):
    primary = DEPLOYMENT
    watches = (REPLICA_SET, POD)

    def reconcile(self, deployment: dict[str, Any]) -> None:
        namespace = deployment["metadata"]["namespace"]
        spec = deployment.get("spec") or {}
        wanted = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        current_name = f"{deployment['metadata']['name']}-{template_hash(template)}"
        replica_sets = owned_by(deployment, self.store.list(*REPLICA_SET, namespace))
        current = next((rs for rs in replica_sets if rs["metadata"]["name"] == current_name), None)
        if current is None:
            current = self._create_replica_set(deployment, current_name, template, replica_sets)
        elif int(current["spec"].get("replicas", 0)) != wanted:
            self._scale(current, wanted)
        self._retire_old_replica_sets(deployment, current, replica_sets, wanted)
        self._update_status(deployment, current, replica_sets, wanted)

    def _retire_old_replica_sets(
        self,
        deployment: dict[str, Any],
        current: dict[str, Any],
        replica_sets: list[dict[str, Any]],
        wanted: int,
    ) -> None:
        """Recreate drops old pods at once; RollingUpdate keeps old pods serving until new ones are Ready."""
        strategy = ((deployment.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
        new_ready = sum(
            1
            for pod in owned_by(current, self.store.list(*POD, current["metadata"]["namespace"]))
            if _pod_is_ready(pod)
        )
        still_needed = 0 if strategy == "Recreate" else max(0, wanted - new_ready)
        for old in replica_sets:
            if old["metadata"]["name"] == current["metadata"]["name"]:
                continue
            replicas = int(old["spec"].get("replicas", 0))
            target = min(replicas, still_needed)
            still_needed -= target
            if replicas != target:
                self._scale(old, target)

    def _create_replica_set(
        self, deployment: dict[str, Any], name: str, template: dict[str, Any], existing: list[dict[str, Any]]
    ) -> dict[str, Any]:
        hash_value = name.rsplit("-", 1)[1]
        pod_template = copy.deepcopy(template)
        pod_template.setdefault("metadata", {}).setdefault("labels", {})[TEMPLATE_HASH_LABEL] = hash_value
        selector = copy.deepcopy((deployment.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[TEMPLATE_HASH_LABEL] = hash_value
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, 0)) for rs in existing
        ]
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": deployment["metadata"]["namespace"],
                "labels": pod_template["metadata"]["labels"],
                "annotations": {REVISION_ANNOTATION: str(max(revisions, default=0) + 1)},
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": int((deployment.get("spec") or {}).get("replicas", 1)),
                "selector": selector,
                "template": pod_template,
            },
            "status": {"replicas": 0},
        }
        return self.store.create(replica_set)

    def _scale(self, replica_set: dict[str, Any], replicas: int) -> None:
        updated = copy.deepcopy(replica_set)
        updated["spec"]["replicas"] = replicas
        updated["metadata"].pop("resourceVersion", None)
        self.store.replace(updated)

    def _update_status(
        self,
        deployment: dict[str, Any],
        current: dict[str, Any],
        replica_sets: list[dict[str, Any]],
        wanted: int,
    ) -> None:
        namespace = deployment["metadata"]["namespace"]
        pods = self.store.list(*POD, namespace)
        all_pods = [pod for rs in [current, *replica_sets] for pod in owned_by(rs, pods)]
        all_pods = list({pod["metadata"]["uid"]: pod for pod in all_pods}.values())
        updated = owned_by(current, pods)
        ready = sum(1 for pod in all_pods if _pod_is_ready(pod))
        updated_ready = sum(1 for pod in updated if _pod_is_ready(pod))
        previous = (deployment.get("status") or {}).get("conditions")
        available = ready >= wanted
        complete = updated_ready >= wanted and len(all_pods) == wanted
        rs_name = current["metadata"]["name"]
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(all_pods),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                condition(
                    previous,
                    "Available",
                    available,
                    "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                ),
                condition(
                    previous,
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if complete
                    else f'ReplicaSet "{rs_name}" is progressing.',
                ),
            ],
        }
        unavailable = len(all_pods) - ready
        if unavailable > 0:
            status["unavailableReplicas"] = unavailable
        for key in ("readyReplicas", "availableReplicas"):
            if status[key] == 0:
                del status[key]  # the API server omits zero counts
        self.store.update_status(*DEPLOYMENT, namespace, deployment["metadata"]["name"], status)
