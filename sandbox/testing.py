"""Run a sandbox on its own event loop in a background thread, for synchronous tests and tools."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from sandbox.app import Sandbox

_START_TIMEOUT = 60.0
_CALL_TIMEOUT = 120.0


class SandboxHandle:
    """A started sandbox plus thread-safe ways to reach into its loop."""

    def __init__(self, sandbox: Sandbox, loop: asyncio.AbstractEventLoop) -> None:
        self.sandbox = sandbox
        self._loop = loop

    @property
    def info(self) -> dict:
        return self.sandbox.info

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def call(
        self, coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, timeout: float = _CALL_TIMEOUT
    ):
        """Run `coro_fn(*args)` on the sandbox loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop)
        return future.result(timeout)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a plain function on the sandbox loop (the sandbox's state is not thread-safe)."""

        async def invoke():
            return fn(*args, **kwargs)

        return self.call(invoke)

    def faults_add(self, **rule: Any) -> int:
        return self.run(self.sandbox.faults.add, **rule)

    def fault_uses(self, rule_id: int) -> int:
        """How many times a behaviour rule has been acted on (0 once it is gone or never used)."""
        rules = self.run(self.sandbox.faults.rules)
        return next((rule.get("used", 0) for rule in rules if rule["id"] == rule_id), 0)

    def faults_clear(self) -> None:
        self.run(self.sandbox.faults.clear)

    def requests(self, api: str | None = None) -> list[dict]:
        return self.run(self.sandbox.log.entries, api)


@contextlib.contextmanager
def running_sandbox(profile: str = "instant", **options: Any) -> Generator[SandboxHandle]:
    """`with running_sandbox("instant") as handle:` a started Sandbox, stopped on exit."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=_run_loop, args=(loop, started), name="sandbox-loop", daemon=True)
    thread.start()
    started.wait(_START_TIMEOUT)
    try:
        sandbox = asyncio.run_coroutine_threadsafe(_create(profile, options), loop).result(_START_TIMEOUT)
        try:
            yield SandboxHandle(sandbox, loop)
        finally:
            asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(_START_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT)
        loop.close()


async def _create(profile: str, options: dict) -> Sandbox:
    sandbox = Sandbox(profile=profile, **options)
    await sandbox.start()
    return sandbox


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()


class GoogleClients:
    """The official GCP clients, REST transport, pointed at a sandbox with its service-account key."""

    def __init__(self, info: dict) -> None:
        from google.api_core.client_options import ClientOptions
        from google.oauth2 import service_account

        self.project = info["project_id"]
        self.credentials = service_account.Credentials.from_service_account_file(
            info["key_path"], scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        self.client_options = ClientOptions(api_endpoint=info["api_endpoint"])

    def _build(self, client_class, **kwargs):
        return client_class(credentials=self.credentials, client_options=self.client_options, **kwargs)

    @functools.cached_property
    def service_usage(self):
        from google.cloud import service_usage_v1

        return self._build(service_usage_v1.ServiceUsageClient, transport="rest")

    @functools.cached_property
    def networks(self):
        from google.cloud import compute_v1

        return self._build(compute_v1.NetworksClient)

    @functools.cached_property
    def subnetworks(self):
        from google.cloud import compute_v1

        return self._build(compute_v1.SubnetworksClient)

    @functools.cached_property
    def global_operations(self):
        from google.cloud import compute_v1

        return self._build(compute_v1.GlobalOperationsClient)

    @functools.cached_property
    def region_operations(self):
        from google.cloud import compute_v1

        return self._build(compute_v1.RegionOperationsClient)

    @functools.cached_property
    def clusters(self):
        from google.cloud import container_v1

        return self._build(container_v1.ClusterManagerClient, transport="rest")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def enable_gke_apis(clients: GoogleClients, timeout: float = 30.0) -> None:
    """Enable Compute Engine and Kubernetes Engine for the project, as the tutorial's step 1.2 does."""
    operation = clients.service_usage.batch_enable_services(
        request={
            "parent": f"projects/{clients.project}",
            "service_ids": ["compute.googleapis.com", "container.googleapis.com"],
        }
    )
    operation.result(timeout=timeout)


def unique_name(prefix: str) -> str:
    """An RFC 1035 name no other test uses, for resources in a shared sandbox."""
    return f"{prefix}-{secrets.token_hex(3)}"
