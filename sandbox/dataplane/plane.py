"""The data plane of one sandbox cluster: it watches the cluster's store and keeps a model server running
for each Ready vLLM pod and a gateway server for each programmed Gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from sandbox.core.faults import FaultTable, RequestLog, fault_middleware
from sandbox.core.profiles import Profile
from sandbox.dataplane.engine import latency_for_profile
from sandbox.dataplane.gateway import GatewayServer
from sandbox.dataplane.modelserver import ModelServer
from sandbox.dataplane.objects import GATEWAY, POD, StoreView, condition_true, key_of, pod_serving
from sandbox.dataplane.picker import EPP, PICKER_MODES
from sandbox.dataplane.podspec import ModelServerSpec, model_server_spec
from sandbox.kube.store import ObjectStore

log = logging.getLogger(__name__)


def _gateway_address(gateway: dict) -> str | None:
    if not condition_true(gateway, "Programmed") or gateway["metadata"].get("deletionTimestamp"):
        return None
    for address in (gateway.get("status") or {}).get("addresses") or []:
        if address.get("type", "IPAddress") == "IPAddress" and address.get("value"):
            return address["value"]
    return None


class DataPlaneHost(Protocol):
    """What the data plane reads from its sandbox: the timing profile, and the fault table and request
    log its servers' middleware uses (None in the harness, whose servers run without that middleware)."""

    profile: Profile
    faults: FaultTable | None
    log: RequestLog | None


class StoreHolder(Protocol):
    """The cluster the data plane watches: only its object store."""

    store: ObjectStore


class DataPlane:
    def __init__(self, sandbox: DataPlaneHost, cluster: StoreHolder) -> None:
        self._sandbox = sandbox
        self._cluster = cluster
        self._store = StoreView(cluster.store)
        self.model_servers: dict[tuple[str, str], ModelServer] = {}
        self._model_server_keys: dict[tuple[str, str], tuple[str, ModelServerSpec]] = {}
        self.gateways: dict[tuple[str, str], GatewayServer] = {}
        self._slowdowns: dict[str, float] = {}
        self._picker_modes: dict[str, str] = {}
        self._events: asyncio.Queue | None = None
        self._watcher: asyncio.Task | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # Subscribe before the first listing so no change falls between the two; reconciling is idempotent.
        self._events = self._cluster.store.subscribe()
        for obj in await self._store.list(POD) + await self._store.list(GATEWAY):
            await self._reconcile("ADDED", obj)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._events is not None:
            self._cluster.store.unsubscribe(self._events)
            self._events = None
        for gateway in list(self.gateways.values()):
            await gateway.stop()
        self.gateways.clear()
        for server in list(self.model_servers.values()):
            await server.stop()
        self.model_servers.clear()
        self._model_server_keys.clear()

    async def _watch(self) -> None:
        assert self._events is not None
        while True:
            event_type, obj = await self._events.get()
            await self._reconcile(event_type, obj)

    async def _reconcile(self, event_type: str, obj: dict) -> None:
        kind = obj.get("kind")
        try:
            if kind == "Pod":
                await self._reconcile_pod(obj, deleted=event_type == "DELETED")
            elif kind == "Gateway":
                await self._reconcile_gateway(obj, deleted=event_type == "DELETED")
        except Exception:  # one bad object must not stop the data plane
            log.exception("data plane could not reconcile %s %s/%s", kind, *key_of(obj))

    # -- knobs for tests and benchmarks --------------------------------------------------------------

    def set_pod_slowdown(self, pod_name: str, factor: float) -> None:
        """Multiply the latencies of the model server of pod `pod_name` (in any namespace) by factor."""
        if not factor > 0:
            raise ValueError(f"slowdown factor must be positive, got {factor!r}")
        self._slowdowns[pod_name] = float(factor)
        for (_, name), server in self.model_servers.items():
            if name == pod_name:
                server.engine.slowdown = float(factor)

    def set_picker(self, gateway_name: str, mode: str) -> None:
        """Choose how the Gateway(s) named gateway_name pick pool endpoints: "epp" or "round_robin"."""
        if mode not in PICKER_MODES:
            raise ValueError(f"unknown picker mode {mode!r}; choose one of {PICKER_MODES}")
        self._picker_modes[gateway_name] = mode
        for (_, name), gateway in self.gateways.items():
            if name == gateway_name:
                gateway.picker.mode = mode

    # -- model servers -------------------------------------------------------------------------------

    async def _reconcile_pod(self, pod: dict, deleted: bool) -> None:
        key = key_of(pod)
        spec = None if deleted or not pod_serving(pod) else model_server_spec(pod)
        wanted = None if spec is None else (pod["status"]["podIP"], spec)
        if self._model_server_keys.get(key) == wanted:
            return
        await self._stop_model_server(key)
        if wanted is None:
            return
        namespace, name = key
        server = ModelServer(
            spec,
            latency_for_profile(self._sandbox.profile.name),
            pod_name=name,
            namespace=namespace,
            middlewares=self._middlewares("model"),
        )
        server.engine.slowdown = self._slowdowns.get(name, 1.0)
        try:
            await server.start(wanted[0])
        except OSError as error:
            log.error(
                "model server for pod %s/%s could not bind %s:%s: %s",
                namespace,
                name,
                wanted[0],
                spec.port,
                error,
            )
            await server.stop()
            return
        self.model_servers[key] = server
        self._model_server_keys[key] = wanted

    async def _stop_model_server(self, key: tuple[str, str]) -> None:
        server = self.model_servers.pop(key, None)
        self._model_server_keys.pop(key, None)
        if server is not None:
            await server.stop()

    # -- gateways ------------------------------------------------------------------------------------

    async def _reconcile_gateway(self, gateway: dict, deleted: bool) -> None:
        key = key_of(gateway)
        address = None if deleted else _gateway_address(gateway)
        current = self.gateways.get(key)
        if address is None:
            if current is not None:
                await self.gateways.pop(key).stop()
            return
        server = GatewayServer(
            self._store,
            gateway,
            address,
            self._picker_modes.get(key[1], EPP),
            middlewares=self._middlewares("gateway"),
        )
        if current is not None:
            if current.signature == server.signature:
                return
            await self.gateways.pop(key).stop()
        try:
            await server.start()
        except OSError as error:
            log.error("gateway %s/%s could not listen on %s: %s", *key, address, error)
            return
        self.gateways[key] = server

    def _middlewares(self, api_name: str) -> tuple:
        """The sandbox's fault-injection and request-log middleware, when the sandbox has a fault table."""
        if self._sandbox.faults is None or self._sandbox.log is None:
            return ()
        return (fault_middleware(api_name, self._sandbox),)
