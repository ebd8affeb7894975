"""InferencePool (v1) status: one parent per Gateway whose HTTPRoutes send traffic to the pool."""

from __future__ import annotations

from typing import Any

from sandbox.kube.controllers.base import Controller
from sandbox.kube.controllers.conditions import condition
from sandbox.kube.controllers.gateways import GATEWAY, GATEWAY_GROUP, HTTP_ROUTE
from sandbox.kube.controllers.routes import INFERENCE_POOL, SERVICE, references_pool


class InferencePoolController(Controller):
    primary = INFERENCE_POOL
    watches = (HTTP_ROUTE, GATEWAY, SERVICE)

    def reconcile(self, pool: dict[str, Any]) -> None:
        metadata = pool["metadata"]
        namespace = metadata.get("namespace")
        generation = metadata.get("generation", 1)
        previous_by_gateway = {
            (entry.get("parentRef") or {}).get("name"): entry.get("conditions")
            for entry in (pool.get("status") or {}).get("parents") or []
        }
        resolved, reason, message = self._resolve_picker(pool)
        parents = []
        for gateway_name in self._parent_gateways(pool):
            previous = previous_by_gateway.get(gateway_name)
            parents.append(
                {
                    "parentRef": {
                        "group": GATEWAY_GROUP,
                        "kind": "Gateway",
                        "name": gateway_name,
                        "namespace": namespace,
                    },
                    "conditions": [
                        condition(previous, "Accepted", True, "Accepted", "", generation),
                        condition(previous, "ResolvedRefs", resolved, reason, message, generation),
                    ],
                }
            )
        self.store.update_status(*INFERENCE_POOL, namespace, metadata["name"], {"parents": parents})

    def _parent_gateways(self, pool: dict[str, Any]) -> list[str]:
        namespace = pool["metadata"].get("namespace")
        names: list[str] = []
        for route in self.store.list(*HTTP_ROUTE, namespace):
            if not references_pool(route, pool["metadata"]["name"]):
                continue
            for parent in (route.get("spec") or {}).get("parentRefs") or []:
                name = parent.get("name", "")
                if parent.get("namespace", namespace) == namespace and self.store.get(
                    *GATEWAY, namespace, name
                ):
                    if name not in names:
                        names.append(name)
        return names

    def _resolve_picker(self, pool: dict[str, Any]) -> tuple[bool, str, str]:
        picker = (pool.get("spec") or {}).get("endpointPickerRef") or {}
        kind, name = picker.get("kind", "Service"), picker.get("name", "")
        if kind != "Service" or picker.get("group", "") != "":
            return (
                False,
                "InvalidExtensionRef",
                f"endpointPickerRef kind {kind} is not supported (use a Service)",
            )
        if self.store.get(*SERVICE, pool["metadata"].get("namespace"), name) is None:
            return False, "InvalidExtensionRef", f'endpoint picker Service "{name}" not found'
        return True, "ResolvedRefs", ""
