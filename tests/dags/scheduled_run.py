"""Run the DAG through `dag.test()` as a scheduled run instead of dag.test's manual one."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from unittest import mock


def scheduled_dagrun(*, dag, session, conf, start_date, **_manual):
    """The run the scheduler creates for the DAG's next interval (SchedulerJobRunner._create_dag_runs
    in airflow/jobs/scheduler_job_runner.py: the timetable's run info and run id, run type
    "scheduled", triggered by the timetable), RUNNING rather than QUEUED because dag.test() runs it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    info = dag.next_dagrun_info(last_automated_run_info=None)
    for earlier in session.query(DagRun).filter_by(dag_id=dag.dag_id, logical_date=info.logical_date):
        session.delete(earlier)  # an earlier test session's run of the same interval
    session.commit()
    return dag.create_dagrun(
        run_id=dag.timetable.generate_run_id(
            run_type=DagRunType.SCHEDULED, run_after=info.run_after, data_interval=info.data_interval
        ),
        logical_date=info.logical_date,
        data_interval=info.data_interval,
        run_after=info.run_after,
        conf=conf,
        run_type=DagRunType.SCHEDULED,
        state=DagRunState.RUNNING,
        triggered_by=DagRunTriggeredByType.TIMETABLE,
        start_date=start_date,
        session=session,
    )


@contextlib.contextmanager
def scheduled_runs() -> Generator[None]:
    """Inside, `dag.test()` creates its run with `scheduled_dagrun` (it looks the helper up per call)."""
    with mock.patch("airflow.models.dagrun.get_or_create_dagrun", scheduled_dagrun):
        yield
