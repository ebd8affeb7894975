"""GKE's Gateway controller, simulated: GatewayClasses are accepted; Gateways get an address and
Programmed=True once the regional load balancer could be built, which needs an ACTIVE proxy-only
subnet in the cluster's VPC and region.

A programmed Gateway's load balancer exists in the Compute twin (sandbox.gcp.loadbalancers) and the
Gateway carries GKE's finalizer `gateway.finalizer.networking.gke.io` (seen in `kubectl describe
gateway` on GKE, e.g. arkb2023/devops-kubernetes ping-pong 3.4 README). Deleting the Gateway only
marks it; the controller removes the load balancer after `profile.lb_cleanup` seconds (minutes on
GKE), then the finalizer, and the Gateway goes. If the cluster goes first, nothing removes them.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from sandbox.core.waits import wall_clock
from sandbox.gcp.loadbalancers import (
    GatewayLoadBalancer,
    LoadBalancerBuilder,
    gateway_annotations,
    short_hash,
)
from sandbox.kube.builtin import GKE_GATEWAY_CONTROLLER
from sandbox.kube.controllers.base import ControlledCluster, Controller
from sandbox.kube.controllers.conditions import condition
from sandbox.kube.controllers.events import EventRecorder

GATEWAY_CLASS = ("gateway.networking.k8s.io/v1", "GatewayClass")
GATEWAY = ("gateway.networking.k8s.io/v1", "Gateway")
HTTP_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
GATEWAY_GROUP = "gateway.networking.k8s.io"
POOL_GROUP = "inference.networking.k8s.io"
GKE_GATEWAY_FINALIZER = "gateway.finalizer.networking.gke.io"


def is_gke_class(gateway_class: dict[str, Any] | None) -> bool:
    return (
        bool(gateway_class)
        and (gateway_class.get("spec") or {}).get("controllerName") == GKE_GATEWAY_CONTROLLER
    )


def route_targets_gateway(route: dict[str, Any], gateway: dict[str, Any], section: str | None = None) -> bool:
    route_namespace = route["metadata"].get("namespace")
    for parent in (route.get("spec") or {}).get("parentRefs") or []:
        if (
            parent.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
            and parent.get("kind", "Gateway") == "Gateway"
            and parent.get("name") == gateway["metadata"]["name"]
            and parent.get("namespace", route_namespace) == gateway["metadata"].get("namespace")
            and (section is None or parent.get("sectionName") in (None, section))
        ):
            return True
    return False


class GatewayClassController(Controller):
    primary = GATEWAY_CLASS

    def reconcile(self, gateway_class: dict[str, Any]) -> None:
        if not is_gke_class(gateway_class):
            return  # another controller's class: not ours to judge
        previous = (gateway_class.get("status") or {}).get("conditions")
        generation = gateway_class["metadata"].get("generation", 1)
        status = {"conditions": [condition(previous, "Accepted", True, "Accepted", "", generation)]}
        self.store.update_status(*GATEWAY_CLASS, None, gateway_class["metadata"]["name"], status)


class GatewayController(Controller):
    primary = GATEWAY
    watches = (GATEWAY_CLASS, HTTP_ROUTE)

    def __init__(self, cluster: ControlledCluster) -> None:
        super().__init__(cluster)
        self._first_seen: dict[str, float] = {}
        self._addresses: dict[str, str] = {}
        # uid -> (collection, scope, name) of the Compute resources built for that Gateway.
        self._built: dict[str, list[tuple[str, str, str]]] = {}
        self._cleanup_due: dict[str, float] = {}
        self.events = EventRecorder(self.store, "sc-gateway-controller")
        self.builder = LoadBalancerBuilder(cluster.sandbox.gcp)

    def forget(self, gateway: dict[str, Any]) -> None:
        uid = gateway["metadata"]["uid"]
        self._first_seen.pop(uid, None)
        self._addresses.pop(uid, None)
        self._cleanup_due.pop(uid, None)

    def reconcile(self, gateway: dict[str, Any]) -> None:
        metadata = gateway["metadata"]
        uid = metadata["uid"]
        if metadata.get("deletionTimestamp"):
            self._finalize(gateway)
            return
        generation = metadata.get("generation", 1)
        previous = (gateway.get("status") or {}).get("conditions")
        class_name = (gateway.get("spec") or {}).get("gatewayClassName", "")
        if not is_gke_class(self.store.get(*GATEWAY_CLASS, None, class_name)):
            message = (
                f'GatewayClass "{class_name}" does not exist or is not managed by {GKE_GATEWAY_CONTROLLER}'
            )
            self._write(
                gateway,
                [
                    condition(previous, "Accepted", False, "InvalidParameters", message, generation),
                    condition(previous, "Programmed", False, "Invalid", message, generation),
                ],
                programmed=False,
            )
            return
        accepted = condition(previous, "Accepted", True, "Accepted", "", generation)
        waited = time.monotonic() - self._first_seen.setdefault(uid, time.monotonic())
        if uid not in self._addresses and waited < self.profile.gateway_programming:
            pending = "Waiting for the load balancer to be provisioned"
            self._write(
                gateway,
                [accepted, condition(previous, "Programmed", False, "Pending", pending, generation)],
                False,
            )
            self.reconcile_later(self.profile.gateway_programming - waited, gateway)
            return
        blocker = self._programming_blocker(gateway)
        if uid not in self._addresses and blocker:
            self.events.record(gateway, "Warning", "SYNC", blocker)
            self._write(
                gateway,
                [accepted, condition(previous, "Programmed", False, "Invalid", blocker, generation)],
                False,
            )
            # A fix (a proxy-only subnet created later) shows up on a recheck.
            self.reconcile_later(max(self.profile.gateway_programming, 0.5), gateway)
            return
        if uid not in self._addresses:
            self._addresses[uid] = (
                self._existing_address(gateway) or self.cluster.sandbox.addresses.allocate()
            )
            where = f"{metadata.get('namespace')}/{metadata['name']}"
            self.events.record(gateway, "Normal", "SYNC", f"SYNC on {where} was a success")
            self.cluster.sandbox.waits.record(
                "gateway", where, wall_clock(self._first_seen[uid]), wall_clock(time.monotonic())
            )
        self._build_load_balancer(gateway)
        self._write(
            gateway, [accepted, condition(previous, "Programmed", True, "Programmed", "", generation)], True
        )

    # -- the load balancer in Compute ----------------------------------------------------------

    def _spec(self, gateway: dict[str, Any]) -> GatewayLoadBalancer:
        cluster = self.cluster
        metadata = gateway["metadata"]
        where = f"{cluster.project}/{cluster.location}/{cluster.name}"
        listeners = (gateway.get("spec") or {}).get("listeners") or [{}]
        return GatewayLoadBalancer(
            project=cluster.project,
            project_number=cluster.sandbox.gcp.project(cluster.project).number,
            region=cluster.region,
            network=cluster.network,
            subnetwork=cluster.subnetwork,
            cluster_hash=short_hash(where, length=4),
            cluster_uid8=hashlib.sha256(where.encode()).hexdigest()[:8],
            namespace=metadata.get("namespace", "default"),
            gateway=metadata["name"],
            gateway_uid=metadata["uid"],
            gateway_class=(gateway.get("spec") or {}).get("gatewayClassName", ""),
            address=self._addresses[metadata["uid"]],
            port=int(listeners[0].get("port", 80)),
            backends=self._backends(gateway),
        )

    def _backends(self, gateway: dict[str, Any]) -> list[tuple[str, int]]:
        """(name, port) of every backend the Gateway's attached routes send to."""
        namespace = gateway["metadata"].get("namespace")
        found: list[tuple[str, int]] = []
        for route in self.store.list(*HTTP_ROUTE, namespace):
            if not route_targets_gateway(route, gateway):
                continue
            for rule in (route.get("spec") or {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    backend = (ref.get("name", ""), int(ref.get("port") or self._pool_port(namespace, ref)))
                    if backend not in found:
                        found.append(backend)
        return found

    def _pool_port(self, namespace: str | None, ref: dict[str, Any]) -> int:
        if ref.get("group") != POOL_GROUP:
            return 80
        for version in ("v1", "v1alpha2"):
            pool = self.store.get(f"{POOL_GROUP}/{version}", "InferencePool", namespace, ref.get("name", ""))
            if pool:
                spec = pool.get("spec") or {}
                return int(
                    ((spec.get("targetPorts") or [{}])[0]).get("number") or spec.get("targetPortNumber") or 80
                )
        return 80

    def _build_load_balancer(self, gateway: dict[str, Any]) -> None:
        metadata = gateway["metadata"]
        spec = self._spec(gateway)
        built = self.builder.build(spec)
        self._built[metadata["uid"]] = sorted(set(self._built.get(metadata["uid"], [])) | set(built))
        current = self.store.get(*GATEWAY, metadata.get("namespace"), metadata["name"])
        if current is None or current["metadata"].get("deletionTimestamp"):
            return
        wanted = dict(current["metadata"].get("annotations") or {})
        wanted.update(gateway_annotations(spec.project_number, self._built[metadata["uid"]]))
        finalizers = list(current["metadata"].get("finalizers") or [])
        if GKE_GATEWAY_FINALIZER not in finalizers:
            finalizers.append(GKE_GATEWAY_FINALIZER)
        if wanted != current["metadata"].get("annotations") or finalizers != current["metadata"].get(
            "finalizers"
        ):
            current["metadata"]["annotations"] = wanted
            current["metadata"]["finalizers"] = finalizers
            self.store.replace(current)

    def _finalize(self, gateway: dict[str, Any]) -> None:
        """After lb_cleanup seconds, delete the load balancer, then drop GKE's finalizer."""
        metadata = gateway["metadata"]
        uid = metadata["uid"]
        if GKE_GATEWAY_FINALIZER not in (metadata.get("finalizers") or []):
            return
        now = time.monotonic()
        due = self._cleanup_due.setdefault(uid, now + self.profile.lb_cleanup)
        if now < due:
            self.reconcile_later(due - now, gateway)
            return
        if self.behaviour("lb_cleanup_late", namespace=metadata.get("namespace"), name=metadata["name"]):
            self._cleanup_due[uid] = now + max(self.profile.lb_cleanup, 1.0)
            self.reconcile_later(self._cleanup_due[uid] - now, gateway)
            return
        built = self._built.pop(uid, [])
        others = [other for other in self._built if other != uid]
        self.builder.release(self.cluster.project, built, keep_firewall=bool(others))
        current = self.store.get(*GATEWAY, metadata.get("namespace"), metadata["name"])
        if current is not None and current["metadata"]["uid"] == uid:
            current["metadata"]["finalizers"] = [
                f for f in current["metadata"].get("finalizers") or [] if f != GKE_GATEWAY_FINALIZER
            ]
            self.store.replace(current)

    def _programming_blocker(self, gateway: dict[str, Any]) -> str:
        cluster = self.cluster
        metadata = gateway["metadata"]
        if self.behaviour(
            "gateway_never_programmed", namespace=metadata.get("namespace"), name=metadata["name"]
        ):
            return "The load balancer for this Gateway could not be provisioned (injected fault gateway_never_programmed)."
        if not cluster.sandbox.gcp.proxy_only_subnet_active(cluster.project, cluster.region, cluster.network):
            return (
                f"error cause: no-proxy-only-subnet: An active proxy-only subnetwork is required in the same "
                f"region ({cluster.region}) and VPC network ({cluster.network}) as the forwarding rule of this "
                "Gateway. Create a subnet with --purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE."
            )
        return ""

    @staticmethod
    def _existing_address(gateway: dict[str, Any]) -> str | None:
        addresses = (gateway.get("status") or {}).get("addresses") or []
        return addresses[0]["value"] if addresses else None

    def _write(self, gateway: dict[str, Any], conditions: list[dict[str, Any]], programmed: bool) -> None:
        metadata = gateway["metadata"]
        status: dict[str, Any] = {
            "conditions": conditions,
            "listeners": self._listener_statuses(gateway, programmed),
        }
        if programmed:
            status["addresses"] = [{"type": "IPAddress", "value": self._addresses[metadata["uid"]]}]
        self.store.update_status(*GATEWAY, metadata.get("namespace"), metadata["name"], status)

    def _listener_statuses(self, gateway: dict[str, Any], programmed: bool) -> list[dict[str, Any]]:
        generation = gateway["metadata"].get("generation", 1)
        previous_by_name = {
            listener.get("name"): listener.get("conditions")
            for listener in (gateway.get("status") or {}).get("listeners") or []
        }
        routes = self.store.list(*HTTP_ROUTE, gateway["metadata"].get("namespace"))
        statuses = []
        for listener in (gateway.get("spec") or {}).get("listeners") or []:
            name = listener.get("name", "")
            previous = previous_by_name.get(name)
            attached = sum(1 for route in routes if route_targets_gateway(route, gateway, name))
            statuses.append(
                {
                    "name": name,
                    "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                    "attachedRoutes": attached,
                    "conditions": [
                        condition(previous, "Accepted", True, "Accepted", "", generation),
                        condition(previous, "ResolvedRefs", True, "ResolvedRefs", "", generation),
                        condition(
                            previous,
                            "Programmed",
                            programmed,
                            "Programmed" if programmed else "Pending",
                            "",
                            generation,
                        ),
                    ],
                }
            )
        return statuses
