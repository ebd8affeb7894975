"""Each task's start and end, kept as a small XCom so the run report can show section durations.

Tasks cannot read other task instances from the metadata DB in Airflow 3, so every task records
its own timing through the DAG's `post_execute` hook.
"""

from __future__ import annotations

from datetime import UTC, datetime

TIMING_KEY = "timing"
# A deferred task resumes in a new process whose ti.start_date is the resume, not the first start:
# the first execution keeps its own start here (the DAG's pre_execute).
START_KEY = "timing_start"


def record_start(context) -> None:
    ti = context["ti"]
    if ti.xcom_pull(task_ids=ti.task_id, key=START_KEY) is None:
        started = ti.start_date or datetime.now(UTC)
        ti.xcom_push(key=START_KEY, value=started.isoformat())


def record_timing(context, result=None) -> None:
    ti = context["ti"]
    first_start = ti.xcom_pull(task_ids=ti.task_id, key=START_KEY)
    started = first_start or (ti.start_date or datetime.now(UTC)).isoformat()
    # A new try clears the task's XComs (not a resume from deferral), so this is the try that ended it.
    timing = {"start": started, "end": datetime.now(UTC).isoformat(), "try": getattr(ti, "try_number", 1)}
    ti.xcom_push(key=TIMING_KEY, value=timing)


def retried_tasks(timings: dict[str, dict]) -> dict[str, int]:
    """The tasks that needed more than one try, with the try that succeeded."""
    return {task_id: timing["try"] for task_id, timing in timings.items() if timing.get("try", 1) > 1}


def section_durations(timings: dict[str, dict]) -> dict[str, float]:
    """Seconds from the first start to the last end of each section (the task id's group prefix)."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for task_id, timing in timings.items():
        section = task_id.split(".", 1)[0] if "." in task_id else task_id
        start, end = datetime.fromisoformat(timing["start"]), datetime.fromisoformat(timing["end"])
        if section in spans:
            start, end = min(start, spans[section][0]), max(end, spans[section][1])
        spans[section] = (start, end)
    return {section: round((end - start).total_seconds(), 1) for section, (start, end) in spans.items()}
