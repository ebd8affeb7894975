"""Task-instance state timelines sampled from a running Airflow's metadata DB.

Sampling the `task_instance` table is how the benchmark sees how long each task spent running (a
worker slot held) and deferred (no slot held): Airflow keeps no per-state history of a try, and a
deferred task's start date is not the start of its last running stretch.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RUNNING = "running"
DEFERRED = "deferred"
UP_FOR_RETRY = "up_for_retry"
FINISHED_RUN_STATES = {"success", "failed"}


@dataclass
class Timeline:
    """Each task's state changes as (seconds since sampling began, state), plus the run's own."""

    interval: float
    transitions: dict[str, list[tuple[float, str | None]]] = field(default_factory=dict)
    ended_at: float = 0.0

    def record(self, at: float, states: dict[str, str | None]) -> None:
        for task_id, state in states.items():
            changes = self.transitions.setdefault(task_id, [])
            if not changes or changes[-1][1] != state:
                changes.append((at, state))
        self.ended_at = at

    def seconds_in(self, task_id: str, state: str) -> float:
        """Time the task was seen in `state`, each stretch ending at the next observed change."""
        changes = self.transitions.get(task_id, [])
        total = 0.0
        for (start, seen), (end, _) in zip(changes, [*changes[1:], (self.ended_at, None)], strict=True):
            if seen == state:
                total += end - start
        return total

    def tasks_ever_in(self, state: str) -> list[str]:
        return sorted(t for t, changes in self.transitions.items() if any(s == state for _, s in changes))

    def final_states(self) -> dict[str, str | None]:
        return {task_id: changes[-1][1] for task_id, changes in self.transitions.items()}


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    state: str
    wall_seconds: float
    timeline: Timeline
    started_at: float = 0.0  # the run's start, seconds since the epoch (as the sandbox's wait log)
    tries: dict[str, int] = field(default_factory=dict)  # each task's try_number when the run ended

    def retried(self) -> list[str]:
        """Tasks that needed more than one try: a figure from this run says so."""
        seen_retry = set(self.timeline.tasks_ever_in(UP_FOR_RETRY))
        return sorted(seen_retry | {task for task, tries in self.tries.items() if tries > 1})


class MetadataReader:
    """Read-only queries on an Airflow SQLite metadata DB that other processes write to."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        # Writers lock the file briefly; a read that meets the lock waits up to the timeout.
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute(sql, args).fetchall()

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        rows = self.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            (dag_id, run_id),
        )
        return dict(rows)

    def task_tries(self, dag_id: str, run_id: str) -> dict[str, int]:
        rows = self.query(
            "SELECT task_id, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            (dag_id, run_id),
        )
        return {task: tries or 0 for task, tries in rows}

    def run_state(self, dag_id: str, run_id: str) -> tuple[str | None, datetime | None, datetime | None]:
        rows = self.query(
            "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        if not rows:
            return None, None, None
        state, start, end = rows[0]
        return state, _timestamp(start), _timestamp(end)


def follow_run(
    reader: MetadataReader, dag_id: str, run_id: str, timeout: float, interval: float
) -> RunRecord:
    """Sample the run's task states until it finishes (or `timeout` passes: TimeoutError)."""
    timeline = Timeline(interval=interval)
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < timeout:
        timeline.record(elapsed, reader.task_states(dag_id, run_id))
        state, start, end = reader.run_state(dag_id, run_id)
        if state in FINISHED_RUN_STATES and start and end:
            return RunRecord(
                run_id,
                state,
                (end - start).total_seconds(),
                timeline,
                started_at=_epoch(start),
                tries=reader.task_tries(dag_id, run_id),
            )
        time.sleep(interval)
    raise TimeoutError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s")


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _epoch(moment: datetime) -> float:
    # Airflow stores UTC; SQLite hands it back without a zone.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
