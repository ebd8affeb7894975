"""Simulated long-running work behind every API's Operation resource.

Each API renders an `Operation` in its own wire shape (Compute, Container, google.longrunning);
this module only tracks its life: PENDING -> RUNNING -> DONE, with an error when the work failed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sandbox.core.waits import WaitLog
from sandbox.gcp.errors import GcpError

logger = logging.getLogger(__name__)


def new_operation_name() -> str:
    """Names shaped like GCP's: operation-<epoch ms>-<hex>."""
    return f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}-{secrets.token_hex(4)}"


def new_numeric_id() -> str:
    """A decimal uint64 string, as Compute and Container use for resource and operation ids."""
    return str(secrets.randbits(63) | (1 << 62))


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{seconds}.{int(timestamp % 1 * 1000):03d}Z"


@dataclass
class Operation:
    name: str
    operation_type: str
    target: str
    insert_time: float = field(default_factory=time.time)
    id: str = field(default_factory=new_numeric_id)
    status: str = "PENDING"
    start_time: float | None = None
    end_time: float | None = None
    error: GcpError | None = None
    result: dict | None = None
    target_id: str = ""
    resource_names: list[str] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.status == "DONE"


class OperationRunner:
    """Runs operation work as background tasks on the sandbox loop, and cancels them on stop."""

    def __init__(self, waits: WaitLog | None = None) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._waits = waits

    def start(self, operation: Operation, work: Callable[[], Awaitable[dict | None]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(operation, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, operation: Operation, work: Callable[[], Awaitable[dict | None]]) -> None:
        operation.status = "RUNNING"
        operation.start_time = time.time()
        try:
            operation.result = await work()
        except GcpError as error:
            operation.error = error
        except asyncio.CancelledError:
            operation.error = GcpError(499, "The operation was cancelled because the sandbox stopped.")
            raise
        except Exception as error:  # a bug in the sandbox must still end the operation
            logger.exception("operation %s failed unexpectedly", operation.name)
            operation.error = GcpError(500, f"Internal error in the sandbox: {type(error).__name__}")
        finally:
            operation.status = "DONE"
            operation.end_time = time.time()
            operation.finished.set()
            if self._waits is not None:
                self._waits.record(
                    "operation",
                    operation.operation_type,
                    operation.start_time,
                    operation.end_time,
                    target=operation.target,
                )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_until_done(operation: Operation, timeout: float) -> None:
    """Block (like Compute's operations.wait) until the operation is done or `timeout` passes."""
    try:
        await asyncio.wait_for(operation.finished.wait(), timeout)
    except TimeoutError:
        pass
