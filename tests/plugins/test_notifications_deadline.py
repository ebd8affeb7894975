"""The "run not done N after it was queued" alert is an Airflow 3.3 Deadline Alert, and it fires.

The run goes through Airflow's own code from the DAG file to the receivers: the DAG file is parsed
and written to the metadata DB (its DeadlineAlert rows), a queued run gets its Deadline row
(``SerializedDAG.create_dagrun``), the scheduler's query for missed deadlines finds it and
``Deadline.handle_miss`` queues the callback as a Trigger, and that Trigger, run as the triggerer
runs it, mails and posts through the loopback receivers. Only the scheduler's and the triggerer's
loops are left out (each would cost a process start-up)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime

import pytest

from tests.plugins.test_notifications import (  # noqa: F401 (the receivers are fixtures)
    BASE_URL,
    SMTP_PASSWORD,
    WEBHOOK_TOKEN,
    smtp_inbox,
    targets,
    webhook_inbox,
)

# A new DAG id each run: the metadata DB keeps a DAG's serialized versions and rewrites one at most
# every min_serialized_dag_update_interval (30 s), so a reused id could run on an older definition.
DAG_ID = f"notify_deadline_probe_{secrets.token_hex(4)}"
DEADLINE_SECONDS = 1
PROBE_DAG = f'''
from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from gke_inference import notifications

with DAG("{DAG_ID}", schedule=None, deadline=notifications.deadline_alert(timedelta(seconds={DEADLINE_SECONDS}))):
    EmptyOperator(task_id="work")
'''


@pytest.fixture
def probe_dag_in_db(tmp_path, monkeypatch, targets):  # noqa: F811 (targets is the imported fixture)
    """The probe DAG file parsed with the targets in the environment and synced to the DB, as the
    dag processor does (the same calls as DAG.test, airflow/sdk/definitions/dag.py)."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    (tmp_path / f"{DAG_ID}.py").write_text(PROBE_DAG)
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=str(tmp_path), bundle_path=tmp_path, bundle_name="dags-folder")
    assert bag.import_errors == {} and DAG_ID in bag.dags
    sync_bag_to_db(bag, "dags-folder", None)
    return targets


def queue_a_run(session) -> str:
    """A queued run, created as the scheduler creates one (its queued_at is the deadline's reference)."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    now = datetime.now(UTC)
    run_id = f"scheduled__{now.isoformat()}"
    SerializedDagModel.get_dag(DAG_ID, session=session).create_dagrun(
        run_id=run_id,
        run_after=now,
        run_type=DagRunType.SCHEDULED,
        triggered_by=DagRunTriggeredByType.TIMETABLE,
        state=DagRunState.QUEUED,
        session=session,
    )
    session.commit()
    return run_id


def handle_missed_deadlines(session) -> list:
    """The scheduler loop's query for missed deadlines and its call for each (airflow/jobs/
    scheduler_job_runner.py, _run_scheduler_loop): returns the Triggers queued for the callbacks."""
    from airflow.models.deadline import Deadline
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    missed = session.scalars(
        select(Deadline)
        .where(Deadline.deadline_time < datetime.now(UTC))
        .where(~Deadline.missed)
        .options(selectinload(Deadline.callback), selectinload(Deadline.dagrun))
    ).all()
    for deadline in missed:
        deadline.handle_miss(session)
    session.commit()
    return [deadline.callback.trigger for deadline in missed]


async def run_as_the_triggerer(trigger_row) -> list[dict]:
    from airflow._shared.module_loading import import_string

    trigger = import_string(trigger_row.classpath)(**trigger_row.kwargs)
    return [event.payload async for event in trigger.run()]


def test_a_run_still_queued_after_its_deadline_is_reported(probe_dag_in_db):
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session

    inbox, posts = probe_dag_in_db
    with create_session() as session:
        run_id = queue_a_run(session)
        run = session.query(DagRun).filter_by(dag_id=DAG_ID, run_id=run_id).one()
        (deadline,) = session.query(Deadline).filter_by(dagrun_id=run.id).all()
        assert (deadline.deadline_time - run.queued_at).total_seconds() == DEADLINE_SECONDS
        assert handle_missed_deadlines(session) == [], "a deadline not yet passed is not missed"

        time.sleep(DEADLINE_SECONDS + 0.1)
        triggers = [
            t for t in handle_missed_deadlines(session) if run_id in json.dumps(t.kwargs, default=str)
        ]
    assert len(triggers) == 1
    events = asyncio.run(run_as_the_triggerer(triggers[0]))

    assert [event["state"] for event in events] == ["running", "success"], events
    assert len(inbox.mails) == 1 and len(posts) == 1
    text = json.loads(posts[0][1])["text"]
    assert f"[{DAG_ID}] run {run_id} not done by its deadline" in text
    assert "State: queued" in text
    assert f"{BASE_URL}/dags/{DAG_ID}/runs/" in text
    assert b"not done by its deadline" in inbox.mails[0]
    for received in (
        inbox.mails[0].decode(),
        posts[0][1].decode(),
        json.dumps(triggers[0].kwargs, default=str),
    ):
        assert SMTP_PASSWORD not in received and WEBHOOK_TOKEN not in received
