"""The shape every simulated controller shares: react to store events, reconcile, run timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from sandbox.core.addresses import AddressPool
from sandbox.core.faults import FaultTable
from sandbox.core.profiles import Profile
from sandbox.core.waits import WaitLog
from sandbox.gcp.state import GcpState
from sandbox.kube.store import ObjectStore

log = logging.getLogger(__name__)


class ControllerHost(Protocol):
    """What the controllers read from the sandbox: timings, fault behaviours, loopback addresses for
    pods and Gateways, and the Compute state a Gateway's load balancer lives in."""

    profile: Profile
    faults: FaultTable
    addresses: AddressPool
    gcp: GcpState
    waits: WaitLog  # when pods became Ready and Gateways Programmed (bookkeeping for the benchmark)


class ControlledCluster(Protocol):
    """The cluster the controllers run in (sandbox.kube.cluster.KubeCluster composes them; they never
    import it, so the two modules do not import each other)."""

    sandbox: ControllerHost
    store: ObjectStore
    project: str
    location: str
    region: str
    name: str
    version: str
    network: str
    subnetwork: str


class Controller:
    """Reconciles every object of `primary` whenever an object of a `watches` kind changes.

    Reconciles are synchronous (the store is), so a burst of events costs little; timers
    (`after`) bring an object back when simulated time has passed. Everything stops with the cluster.
    """

    primary: tuple[str, str]  # (apiVersion, kind)
    watches: tuple[tuple[str, str], ...] = ()

    def __init__(self, cluster: ControlledCluster) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.profile = cluster.sandbox.profile
        self._task: asyncio.Task | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._due: dict[tuple[str | None, str, str], float] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._queue = self.store.subscribe()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{type(self).__name__}")
        self.resync()

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.store.unsubscribe(self._queue)

    async def _run(self) -> None:
        triggers = {self.primary, *self.watches}
        while True:
            relevant = self._note(*await self._queue.get(), triggers)
            # Coalesce a burst of events into one resync.
            while not self._queue.empty():
                relevant = self._note(*self._queue.get_nowait(), triggers) or relevant
            if relevant:
                self.resync()

    def _note(self, event_type: str, obj: dict[str, Any], triggers: set[tuple[str, str]]) -> bool:
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if event_type == "DELETED" and kind == self.primary:
            self._guarded(self.forget, obj)
        return kind in triggers

    # -- reconciling ---------------------------------------------------------------------------

    def resync(self) -> None:
        api_version, kind = self.primary
        for obj in self.store.list(api_version, kind):
            self._guarded(self.reconcile, obj)

    def reconcile_later(self, delay: float, obj: dict[str, Any]) -> None:
        """Reconcile `obj` again after `delay` seconds (one pending timer per object is enough)."""
        metadata = obj["metadata"]
        key = (metadata.get("namespace"), metadata["name"], metadata["uid"])
        due = asyncio.get_running_loop().time() + max(delay, 0.0)
        if key in self._due and self._due[key] <= due + 0.001:
            return
        self._due[key] = due
        self.after(delay, lambda: self._reconcile_key(*key))

    def _reconcile_key(self, namespace: str | None, name: str, uid: str) -> None:
        self._due.pop((namespace, name, uid), None)
        api_version, kind = self.primary
        current = self.store.get(api_version, kind, namespace, name)
        if current is not None and current["metadata"]["uid"] == uid:
            self._guarded(self.reconcile, current)

    def after(self, delay: float, callback) -> None:  # noqa: ANN001 - a zero-argument callable
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._guarded(lambda _: callback(), None)

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    def _guarded(self, function, obj: Any) -> None:  # noqa: ANN001
        try:
            function(obj)
        except Exception:  # one bad object must not stop the controller
            log.exception("%s failed to reconcile %s", type(self).__name__, _describe(obj))

    def reconcile(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def forget(self, obj: dict[str, Any]) -> None:
        """Called once when a primary object is deleted (release what it held)."""

    def behaviour(self, behaviour_name: str, /, **attributes: Any) -> bool:
        """Whether a fault behaviour applies; attributes: project, location, cluster, namespace, plus
        the object's own (pod/app for pods, gateway for Gateways)."""
        return self.cluster.sandbox.faults.behaviour(
            behaviour_name,
            project=self.cluster.project,
            location=self.cluster.location,
            cluster=self.cluster.name,
            **attributes,
        )


def _describe(obj: Any) -> str:
    if isinstance(obj, dict) and "metadata" in obj:
        metadata = obj["metadata"]
        return f"{obj.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}"
    return repr(obj)
