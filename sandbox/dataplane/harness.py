"""A harness for the data plane alone: an object store the tests or a benchmark fill with the tutorial's
objects directly (no Kubernetes API, no controllers), deciding themselves when pods are Ready and when
the Gateway is programmed. Used by `make bench` (through loadtest.py, bench/gateway.py) and by the
data plane tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.core.addresses import AddressPool
from sandbox.core.faults import FaultTable, RequestLog
from sandbox.core.profiles import Profile, get_profile
from sandbox.dataplane.plane import DataPlane
from sandbox.kube.store import ObjectStore

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
WRONG_MODEL = "meta-llama/Llama-3.1-10B-Instruct"
APP = "vllm-llama3-1-8b-instruct"
POOL = "vllm-llama-pool"
GATEWAY = "inference-gateway"
NAMESPACE = "default"
POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": POOL}


@dataclass(frozen=True)
class _Host:
    """The harness's side of sandbox.dataplane.plane.DataPlaneHost: the timing profile, and no fault
    table or request log (the harness's servers run without that middleware)."""

    profile: Profile
    faults: FaultTable | None = None
    log: RequestLog | None = None


@dataclass(frozen=True)
class _Cluster:
    store: ObjectStore


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (bounded) until the data plane has caught up with the store."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached within {timeout:.1f} s")
        await asyncio.sleep(0.005)


class DataPlaneHarness:
    """A data plane watching its own object store, and writers for the tutorial's objects.

    Its loopback addresses come from its own AddressPool, the allocator a Sandbox uses, so a harness
    and any sandbox of the same process never hand out the same address."""

    def __init__(self, profile: str = "instant") -> None:
        self.store = ObjectStore()
        self.dataplane = DataPlane(_Host(get_profile(profile)), _Cluster(self.store))
        self.addresses = AddressPool()
        self.gateway_ip: str | None = None

    async def __aenter__(self) -> DataPlaneHarness:
        await self.dataplane.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.dataplane.stop()
        finally:
            self.addresses.close()

    # -- model servers -------------------------------------------------------------------------------

    def vllm_args(self, extra: tuple[str, ...] = ()) -> list[str]:
        return ["--model", MODEL, "--tensor-parallel-size", "1", "--port", "8000", *extra]

    async def add_model_pods(self, count: int, args: list[str] | None = None, app: str = APP) -> list[str]:
        names = []
        for _ in range(count):
            name = f"{app}-{len(self.store.list('v1', 'Pod'))}"
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
                    "spec": {
                        "containers": [
                            {
                                "name": "vllm",
                                "image": "vllm/vllm-openai:v0.8.5",
                                "args": args or self.vllm_args(),
                                "ports": [{"containerPort": 8000, "name": "http"}],
                            }
                        ]
                    },
                }
            )
            self.set_ready(name, True)
            names.append(name)
        await eventually(lambda: all((NAMESPACE, n) in self.dataplane.model_servers for n in names))
        return names

    def set_ready(self, pod: str, ready: bool) -> None:
        current = self.store.get("v1", "Pod", NAMESPACE, pod)
        ip = (current.get("status") or {}).get("podIP") or self.addresses.allocate()
        self.store.update_status(
            "v1",
            "Pod",
            NAMESPACE,
            pod,
            {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        )

    def pod_ip(self, pod: str) -> str:
        return self.store.get("v1", "Pod", NAMESPACE, pod)["status"]["podIP"]

    # -- gateway objects -----------------------------------------------------------------------------

    def add_pool(self, name: str = POOL, app: str = APP) -> None:
        self.store.create(
            {
                "apiVersion": "inference.networking.k8s.io/v1",
                "kind": "InferencePool",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "selector": {"matchLabels": {"app": app}},
                    "targetPorts": [{"number": 8000}],
                    "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}},
                },
            }
        )

    def put_route(self, name: str, rules: list[dict]) -> None:
        """Create or replace an HTTPRoute (kubectl apply of a route with that name)."""
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY}],
                "rules": rules,
            },
        }
        if self.store.get("gateway.networking.k8s.io/v1", "HTTPRoute", NAMESPACE, name) is None:
            self.store.create(route)
        else:
            self.store.replace(route)

    def put_catch_all_route(self) -> None:
        self.put_route(
            "llm-route",
            [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [POOL_REF]}],
        )

    def put_body_routing_route(self) -> None:
        self.put_route(
            "llm-route",
            [
                {
                    "matches": [
                        {
                            "headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": MODEL}],
                            "path": {"type": "PathPrefix", "value": "/"},
                        }
                    ],
                    "backendRefs": [POOL_REF],
                }
            ],
        )

    async def add_gateway(self, port: int = 80) -> str:
        self.store.create(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
                "spec": {
                    "gatewayClassName": "gke-l7-regional-external-managed",
                    "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}],
                },
            }
        )
        self.gateway_ip = self.addresses.allocate()
        self.store.update_status(
            "gateway.networking.k8s.io/v1",
            "Gateway",
            NAMESPACE,
            GATEWAY,
            {
                "addresses": [{"type": "IPAddress", "value": self.gateway_ip}],
                "conditions": [
                    {"type": "Accepted", "status": "True"},
                    {"type": "Programmed", "status": "True"},
                ],
            },
        )
        await eventually(lambda: (NAMESPACE, GATEWAY) in self.dataplane.gateways)
        return f"http://{self.gateway_ip}:{port}"

    def add_body_based_router(self, available: bool = True) -> None:
        """What the body-based-routing chart renders (provider gke), with the Deployment's status."""
        labels = {"app": "body-based-router"}
        self.store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "body-based-router", "namespace": NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "bbr",
                                    "image": "registry.k8s.io/gateway-api-inference-extension/bbr:v1.0.0",
                                    "args": ["--streaming", "--v", "3"],
                                }
                            ]
                        },
                    },
                },
            }
        )
        self.store.update_status(
            "apps/v1",
            "Deployment",
            NAMESPACE,
            "body-based-router",
            {"replicas": 1, "availableReplicas": 1 if available else 0},
        )
        self.store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "body-based-router", "namespace": NAMESPACE},
                "spec": {
                    "selector": labels,
                    "ports": [{"port": 9004, "targetPort": 9004, "appProtocol": "HTTP2"}],
                },
            }
        )
        self.store.create(
            {
                "apiVersion": "networking.gke.io/v1",
                "kind": "GCPRoutingExtension",
                "metadata": {"name": "body-based-router", "namespace": NAMESPACE},
                "spec": {
                    "targetRefs": [
                        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY}
                    ],
                    "extensionChains": [
                        {
                            "name": "chain1",
                            "extensions": [
                                {
                                    "name": "ext1",
                                    "authority": "myext.com",
                                    "timeout": "1s",
                                    "supportedEvents": ["RequestHeaders", "RequestBody", "RequestTrailers"],
                                    "requestBodySendMode": "FullDuplexStreamed",
                                    "backendRef": {
                                        "group": "",
                                        "kind": "Service",
                                        "name": "body-based-router",
                                        "port": 9004,
                                    },
                                }
                            ],
                        }
                    ],
                },
            }
        )

    def add_backend_policy(self, timeout_sec: int) -> None:
        self.store.create(
            {
                "apiVersion": "networking.gke.io/v1",
                "kind": "GCPBackendPolicy",
                "metadata": {"name": POOL, "namespace": NAMESPACE},
                "spec": {
                    "targetRef": {
                        "group": "inference.networking.k8s.io",
                        "kind": "InferencePool",
                        "name": POOL,
                    },
                    "default": {"timeoutSec": timeout_sec, "logging": {"enabled": True}},
                },
            }
        )

    async def tutorial_setup(self, replicas: int = 1, args: list[str] | None = None) -> str:
        """Sections 3.2-4.1: model pods Ready, InferencePool, catch-all route, programmed Gateway."""
        await self.add_model_pods(replicas, args)
        self.add_pool()
        self.put_catch_all_route()
        return await self.add_gateway()
