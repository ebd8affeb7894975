"""From an HTTPRoute backendRef to the endpoints that may serve it, the backend's timeout, and whether the
Gateway's body-based router is running. All reads go to the store on every call, so changes apply live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.dataplane.objects import (
    DEPLOYMENT,
    GCP_BACKEND_POLICY,
    GCP_ROUTING_EXTENSION,
    INFERENCE_POOL,
    POD,
    SERVICE,
    StoreView,
    labels_match,
    pod_serving,
)
from sandbox.dataplane.picker import Endpoint

INFERENCE_GROUP = "inference.networking.k8s.io"
DEFAULT_BACKEND_TIMEOUT = 30.0  # GCPBackendPolicy default.timeoutSec when no policy applies


@dataclass(frozen=True)
class Backend:
    kind: str  # "InferencePool" | "Service"
    namespace: str
    name: str
    port: int | None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def is_pool(self) -> bool:
        return self.kind == "InferencePool"


class UnsupportedBackend(ValueError):
    pass


def backend_of(ref: Mapping, route_namespace: str) -> Backend:
    group = ref.get("group", "")
    kind = ref.get("kind", "Service")
    namespace = ref.get("namespace", route_namespace)
    port = int(ref["port"]) if ref.get("port") is not None else None
    if group == INFERENCE_GROUP and kind == "InferencePool":
        return Backend("InferencePool", namespace, ref["name"], port)
    if group in ("", "core") and kind == "Service":
        return Backend("Service", namespace, ref["name"], port)
    raise UnsupportedBackend(f"backendRef {group or 'core'}/{kind} is not supported")


async def _serving_pods(store: StoreView, namespace: str, selector: Mapping[str, str]) -> list[dict]:
    if not selector:
        return []  # a selector-less Service has hand-made endpoints, which the sandbox does not model
    pods = await store.list(POD, namespace=namespace, labels=selector)
    return [pod for pod in pods if labels_match(selector, pod["metadata"].get("labels")) and pod_serving(pod)]


async def pool_endpoints(store: StoreView, pool: dict) -> list[Endpoint]:
    spec = pool.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    port = int(((spec.get("targetPorts") or [{}])[0]).get("number", 8000))
    pods = await _serving_pods(store, pool["metadata"].get("namespace", "default"), selector)
    return [Endpoint(pod["metadata"]["name"], pod["status"]["podIP"], port) for pod in pods]


def _container_port(pod: dict, name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    return None


async def service_endpoints(store: StoreView, service: dict, port: int | None) -> list[Endpoint]:
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    service_port = next((p for p in ports if port is None or int(p.get("port", 0)) == port), None)
    if service_port is None:
        return []
    target = service_port.get("targetPort", service_port.get("port"))
    pods = await _serving_pods(
        store, service["metadata"].get("namespace", "default"), spec.get("selector") or {}
    )
    endpoints = []
    for pod in pods:
        number = int(target) if str(target).isdigit() else _container_port(pod, str(target))
        if number is not None:
            endpoints.append(Endpoint(pod["metadata"]["name"], pod["status"]["podIP"], number))
    return endpoints


async def backend_timeout(store: StoreView, backend: Backend) -> float:
    """default.timeoutSec of the GCPBackendPolicy that targets the backend, else GKE's 30 s default."""
    group = INFERENCE_GROUP if backend.is_pool else ""
    for policy in await store.list(GCP_BACKEND_POLICY, namespace=backend.namespace):
        spec = policy.get("spec") or {}
        refs = list(spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else [])
        for ref in refs:
            if (
                ref.get("kind") == backend.kind
                and ref.get("name") == backend.name
                and ref.get("group", "") == group
            ):
                seconds = (spec.get("default") or {}).get("timeoutSec")
                if seconds:
                    return float(seconds)
    return DEFAULT_BACKEND_TIMEOUT


async def lookup_pool(store: StoreView, backend: Backend) -> dict | None:
    return await store.get(INFERENCE_POOL, backend.namespace, backend.name)


async def lookup_service(store: StoreView, backend: Backend) -> dict | None:
    return await store.get(SERVICE, backend.namespace, backend.name)


async def running_body_router(store: StoreView, gateway_namespace: str, gateway_name: str) -> dict | None:
    """The extension entry of a GCPRoutingExtension that targets the Gateway, whose backend Service exists
    and selects the pods of a Deployment with an available replica (the sandbox does not run the bbr
    binary itself); None when no body-based router runs for the Gateway."""
    for extension in await store.list(GCP_ROUTING_EXTENSION, namespace=gateway_namespace):
        spec = extension.get("spec") or {}
        if not any(
            ref.get("kind") == "Gateway" and ref.get("name") == gateway_name
            for ref in spec.get("targetRefs") or []
        ):
            continue
        for chain in spec.get("extensionChains") or []:
            for ext in chain.get("extensions") or []:
                ref = ext.get("backendRef") or {}
                if ref.get("kind", "Service") == "Service" and await _service_has_available_deployment(
                    store, gateway_namespace, ref.get("name", "")
                ):
                    return ext
    return None


async def _service_has_available_deployment(store: StoreView, namespace: str, service_name: str) -> bool:
    service = await store.get(SERVICE, namespace, service_name)
    selector = ((service or {}).get("spec") or {}).get("selector") or {}
    if not selector:
        return False
    for deployment in await store.list(DEPLOYMENT, namespace=namespace):
        template_labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "labels"
        )
        available = ((deployment.get("status") or {}).get("availableReplicas") or 0) >= 1
        if available and labels_match(selector, template_labels):
            return True
    return False
