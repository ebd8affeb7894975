"""When each piece of simulated work began and became ready, by the wall clock: the benchmark's
measured critical path is built from these (bench/critical_path.py). Bookkeeping only: nothing in
the twin's behaviour reads it.

An entry has kind ("operation", "pod", "gateway"), name, began and ended (time.time() seconds)
and any labels the recorder adds (an operation's target, a pod's app label).
"""

from __future__ import annotations

import time
from typing import Any


class WaitLog:
    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: list[dict[str, Any]] = []
        self._capacity = capacity

    def record(self, kind: str, name: str, began: float, ended: float, **labels: Any) -> None:
        if len(self._entries) < self._capacity:
            self._entries.append({"kind": kind, "name": name, "began": began, "ended": ended, **labels})

    def entries(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._entries]


def wall_clock(monotonic_moment: float) -> float:
    """A time.monotonic() moment as a time.time() one."""
    return time.time() - (time.monotonic() - monotonic_moment)
