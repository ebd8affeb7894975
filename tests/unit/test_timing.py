"""timing.py: each task records its own start and end; the report turns them into section spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gke_inference.timing import TIMING_KEY, record_start, record_timing, retried_tasks, section_durations

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def span(start_s: float, end_s: float) -> dict:
    return {
        "start": (T0 + timedelta(seconds=start_s)).isoformat(),
        "end": (T0 + timedelta(seconds=end_s)).isoformat(),
    }


class RecordingTi:
    def __init__(self, start_date, try_number: int = 1) -> None:
        self.start_date = start_date
        self.try_number = try_number
        self.task_id = "verify.wait_gateway_address"
        self.pushed: dict = {}

    def xcom_push(self, key, value) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids, key):
        return self.pushed.get(key)


def test_a_task_records_its_start_date_and_the_time_it_ended():
    ti = RecordingTi(start_date=T0)
    before = datetime.now(UTC)

    record_timing({"ti": ti}, result={"ignored": True})

    timing = ti.pushed[TIMING_KEY]
    assert datetime.fromisoformat(timing["start"]) == T0
    assert before <= datetime.fromisoformat(timing["end"]) <= datetime.now(UTC)


def test_a_deferred_task_keeps_the_start_of_its_first_execution():
    ti = RecordingTi(start_date=T0)
    record_start({"ti": ti})
    ti.start_date = T0 + timedelta(seconds=30)  # the process that resumes after the trigger fired
    record_start({"ti": ti})

    record_timing({"ti": ti})

    assert datetime.fromisoformat(ti.pushed[TIMING_KEY]["start"]) == T0


def test_a_task_without_a_start_date_records_now_for_both():
    ti = RecordingTi(start_date=None)

    record_timing({"ti": ti})

    timing = ti.pushed[TIMING_KEY]
    start, end = datetime.fromisoformat(timing["start"]), datetime.fromisoformat(timing["end"])
    assert timedelta(0) <= end - start < timedelta(seconds=5)


def test_a_section_spans_from_its_first_start_to_its_last_end():
    timings = {
        "cluster.ensure_cluster": span(10, 12),
        "cluster.wait_cluster_running": span(12, 40.04),
        "cluster.install_crds_full_set": span(41, 43),
    }
    assert section_durations(timings) == {"cluster": 33.0}


def test_overlapping_and_out_of_order_tasks_do_not_add_up():
    timings = {
        "verify.check_chat_completion": span(30, 31),
        "verify.wait_gateway_address": span(5, 20),
        "verify.wait_model_pods_ready": span(6, 29),
    }
    assert section_durations(timings) == {"verify": 26.0}


def test_a_task_outside_any_group_is_its_own_section_and_sections_are_separate():
    timings = {
        "plan_run": span(0, 1.26),
        "project_network.enable_apis": span(2, 3),
        "project_network.ensure_network": span(3, 7.5),
        "teardown.delete_cluster": span(1.5, 1.5),
    }
    assert section_durations(timings) == {
        "plan_run": 1.3,
        "project_network": 5.5,
        "teardown": 0.0,
    }


def test_no_timings_no_sections():
    assert section_durations({}) == {}


def test_a_nested_group_counts_towards_its_top_level_section():
    timings = {"gateway.inner.apply": span(0, 2), "gateway.apply_gateway": span(3, 4)}
    assert section_durations(timings) == {"gateway": 4.0}


def test_offsets_of_other_time_zones_are_compared_as_instants():
    tokyo = T0.astimezone(ZoneInfo("Asia/Tokyo"))
    timings = {
        "cluster.a": {"start": tokyo.isoformat(), "end": (T0 + timedelta(seconds=2)).isoformat()},
    }
    assert section_durations(timings) == {"cluster": 2.0}


def test_the_try_that_ended_a_task_is_recorded_and_retried_tasks_are_those_past_their_first():
    ti = RecordingTi(start_date=T0, try_number=3)
    record_timing({"ti": ti})
    assert ti.pushed[TIMING_KEY]["try"] == 3

    timings = {"a": {**span(0, 1), "try": 1}, "b": {**span(0, 1), "try": 3}, "c": span(0, 1)}
    assert retried_tasks(timings) == {"b": 3}
