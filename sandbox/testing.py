"""Run a sandbox on its own event loop in a background thread, for synchronous tests and tools."""

from __future__ import annotations

import asyncio
import contextlib
import threading
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
    sandbox = asyncio.run_coroutine_threadsafe(_create(profile, options), loop).result(_START_TIMEOUT)
    try:
        yield SandboxHandle(sandbox, loop)
    finally:
        try:
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
