"""HTTPRoute status: per parent Gateway, whether the route is accepted and its backends resolve."""

from __future__ import annotations

from typing import Any

from sandbox.kube.builtin import GKE_GATEWAY_CONTROLLER
from sandbox.kube.controllers.base import Controller
from sandbox.kube.controllers.conditions import condition, is_true
from sandbox.kube.controllers.gateways import GATEWAY, GATEWAY_CLASS, GATEWAY_GROUP, HTTP_ROUTE

SERVICE = ("v1", "Service")
INFERENCE_GROUP = "inference.networking.k8s.io"
INFERENCE_POOL = (f"{INFERENCE_GROUP}/v1", "InferencePool")


def backend_refs(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ref for rule in (route.get("spec") or {}).get("rules") or [] for ref in rule.get("backendRefs") or []
    ]


def references_pool(route: dict[str, Any], pool_name: str) -> bool:
    return any(
        ref.get("group") == INFERENCE_GROUP
        and ref.get("kind") == "InferencePool"
        and ref.get("name") == pool_name
        for ref in backend_refs(route)
    )


class HttpRouteController(Controller):
    primary = HTTP_ROUTE
    watches = (GATEWAY, GATEWAY_CLASS, INFERENCE_POOL, SERVICE)

    def reconcile(self, route: dict[str, Any]) -> None:
        metadata = route["metadata"]
        namespace = metadata.get("namespace")
        generation = metadata.get("generation", 1)
        previous_by_parent = {
            _parent_key(entry.get("parentRef") or {}, namespace): entry.get("conditions")
            for entry in (route.get("status") or {}).get("parents") or []
        }
        resolved, reason, message = self._resolve_backends(route)
        parents = []
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            previous = previous_by_parent.get(_parent_key(parent, namespace))
            accepted, accepted_reason, accepted_message = self._accepts(parent, namespace)
            parents.append(
                {
                    "parentRef": parent,
                    "controllerName": GKE_GATEWAY_CONTROLLER,
                    "conditions": [
                        condition(
                            previous, "Accepted", accepted, accepted_reason, accepted_message, generation
                        ),
                        condition(previous, "ResolvedRefs", resolved, reason, message, generation),
                    ],
                }
            )
        self.store.update_status(*HTTP_ROUTE, namespace, metadata["name"], {"parents": parents})

    def _accepts(self, parent: dict[str, Any], route_namespace: str | None) -> tuple[bool, str, str]:
        if parent.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or parent.get("kind", "Gateway") != "Gateway":
            return False, "NoMatchingParent", f"parentRef kind {parent.get('kind')} is not a Gateway"
        name = parent.get("name", "")
        gateway = self.store.get(*GATEWAY, parent.get("namespace", route_namespace), name)
        if gateway is None:
            return False, "NoMatchingParent", f'Gateway "{name}" not found'
        if not is_true(gateway, "Accepted"):
            return False, "NoMatchingParent", f'Gateway "{name}" is not accepted by {GKE_GATEWAY_CONTROLLER}'
        return True, "Accepted", ""

    def _resolve_backends(self, route: dict[str, Any]) -> tuple[bool, str, str]:
        namespace = route["metadata"].get("namespace")
        for ref in backend_refs(route):
            group, kind, name = ref.get("group", ""), ref.get("kind", "Service"), ref.get("name", "")
            ref_namespace = ref.get("namespace", namespace)
            if (group, kind) == (INFERENCE_GROUP, "InferencePool"):
                found = self.store.get(*INFERENCE_POOL, ref_namespace, name)
            elif (group, kind) == ("", "Service"):
                found = self.store.get(*SERVICE, ref_namespace, name)
            else:
                return False, "InvalidKind", f"backendRef kind {group or 'core'}/{kind} is not supported"
            if found is None:
                return False, "BackendNotFound", f'{kind} "{ref_namespace}/{name}" not found'
        return True, "ResolvedRefs", ""


def _parent_key(parent: dict[str, Any], route_namespace: str | None) -> tuple[str, str, str, str]:
    return (
        parent.get("kind", "Gateway"),
        parent.get("namespace", route_namespace or ""),
        parent.get("name", ""),
        parent.get("sectionName", ""),
    )
