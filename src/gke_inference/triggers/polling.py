"""The one shape of every wait: a trigger that polls a cluster until ``check`` gives a verdict.

Each look runs in a worker thread with the synchronous clients, with hooks rebuilt from the GCP
connection inside the triggerer (nothing secret is serialized). ``started_at`` and ``deadline`` are
epoch seconds, so the elapsed time survives a triggerer restart.

Events: ``{"status", "message", "result"}`` where status is
``success`` (result: the XCom value), ``failed`` (waiting or retrying cannot help),
``timeout`` (the deadline passed; result: what the last look left) or
``error`` (neither: the task retries).

A trigger may also be built by the triggerer itself, for a sensor that starts there
(``start_from_trigger``): then its templated arguments arrive as JSON text that the triggerer has
rendered (``rendered_json`` names them), ``started_at`` and ``deadline`` are None and
``wait_timeout`` gives the wait; ``begin()`` turns them into what the sensor would have passed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, StartTriggerArgs, TriggerEvent

from gke_inference.cluster_target import ClusterTarget, ClusterTaskMixin

SUCCESS, FAILED, TIMEOUT, ERROR = "success", "failed", "timeout", "error"


@dataclass(frozen=True)
class Verdict:
    """One look at the thing being waited for."""

    state: str  # one line for progress logs
    done: bool = False
    failure: str | None = None  # set when waiting longer cannot help
    result: Any = None  # the XCom value when done (or what is left, at a timeout)
    unschedulable: bool = False


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PollingTrigger(BaseTrigger):
    """Polls until ``check`` says done or failed, or the deadline passes.

    :param target: the cluster, as the keyword arguments of a ``ClusterTarget`` (its ``to_dict()``).
    :param started_at: epoch seconds when the wait began.
    :param deadline: epoch seconds after which the trigger gives up with the last state it saw.
    :param poll_interval: seconds between looks.
    :param log_interval: seconds between progress lines (every poll, when polls are slower).
    :param wait_timeout: seconds to wait, counted from the first run, when ``started_at`` is None.
    :param rendered_json: the arguments that arrive as JSON text rendered by the triggerer.
    """

    # Spelled out by each trigger: Airflow's plugin loader may import a file a second time under
    # another module name, and the triggerer must find the class under this one.
    classpath: ClassVar[str] = ""
    # When set, polls start this quick and double up to poll_interval (short waits are seen soon).
    first_poll_interval: ClassVar[float | None] = None

    def __init__(
        self,
        *,
        started_at: float | None = None,
        deadline: float | None = None,
        poll_interval: float = 5.0,
        log_interval: float = 30.0,
        wait_timeout: Any = None,
        rendered_json: list[str] | tuple[str, ...] = (),
        **target: Any,
    ) -> None:
        super().__init__()
        # Plain attributes, named as the sensor's template fields, so the triggerer can render them.
        self.target = ClusterTarget(**target)
        for name, value in self.target.to_dict().items():
            setattr(self, name, value)
        self.started_at = started_at
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.log_interval = float(log_interval)
        self.wait_timeout = wait_timeout
        self.rendered_json = list(rendered_json)
        self._hook: Any = None
        if started_at is not None and not self.rendered_json:
            self.begin(float(started_at))

    def begin(self, now: float) -> None:
        """Take the (rendered) arguments as the sensor would pass them; the wait starts at ``now``
        unless ``started_at`` was given. A wrong value raises ValueError or TypeError."""
        from gke_inference.arguments import seconds

        for name in self.rendered_json:
            setattr(self, name, json.loads(getattr(self, name)))
        self.rendered_json = []
        values = {name: getattr(self, name) for name in ClusterTaskMixin.cluster_template_fields}
        # As ClusterTaskMixin.cluster_target: an empty project or chain means the connection's own.
        values["project_id"] = values["project_id"] or None
        values["impersonation_chain"] = values["impersonation_chain"] or None
        self.target = ClusterTarget(**values)
        self.poll_interval = seconds(self.poll_interval, "poll_interval")
        if self.started_at is None:
            self.started_at = now
            self.deadline = now + seconds(self.wait_timeout, "timeout")
        self.started_at, self.deadline = float(self.started_at), float(self.deadline)
        self.begin_wait()

    def begin_wait(self) -> None:
        """Check and convert the wait's own arguments (after ``begin`` took the common ones)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return self.classpath, {
            **self.target.to_dict(),
            "started_at": self.started_at,
            "deadline": self.deadline,
            "poll_interval": self.poll_interval,
            "log_interval": self.log_interval,
            **self.wait_kwargs(),
        }

    # What each wait defines

    def wait_kwargs(self) -> dict[str, Any]:
        """The wait's own constructor arguments, for ``serialize``."""
        return {}

    def describe(self) -> str:
        raise NotImplementedError

    def make_hook(self) -> Any:
        """The hook ``check`` is given; rebuilt after a 401 (credentials or endpoint changed)."""
        raise NotImplementedError

    def check(self, hook: Any, now: float) -> Verdict:
        """One synchronous look (runs in a worker thread)."""
        raise NotImplementedError

    def failure_message(self, failure: str) -> str:
        """The failed event's message for a verdict's failure."""
        return f"{self.describe()} cannot succeed: {failure}"

    def what_vanished(self) -> str | None:
        """After a failed poll: what the wait depends on that is gone, in a sentence (final)."""
        return None

    # The one run loop

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.rendered_json or self.started_at is None:
            try:
                self.begin(time.time())
            except (TypeError, ValueError) as err:  # a wrong plan value: waiting cannot help
                yield self.event(FAILED, f"{type(self).__name__}: {err}")
                return
        last = Verdict(state="no answer yet")
        last_logged_state, last_log_time = None, float("-inf")
        interval = min(self.first_poll_interval or self.poll_interval, self.poll_interval)
        while True:
            now = time.time()
            verdict, final = await self._look(last)
            if final is not None:
                yield final
                return
            if verdict.done:
                self.log.info("%s: %s after %s", self.describe(), verdict.state, self._elapsed(now))
                yield self.event(SUCCESS, verdict.state, verdict.result)
                return
            if verdict.failure:
                yield self.event(FAILED, self.failure_message(verdict.failure))
                return
            last = verdict
            if now >= self.deadline:
                message = f"{self.describe()}: gave up after {self._elapsed(now)}; {verdict.state}"
                yield self.event(TIMEOUT, message, verdict.result)
                return
            if verdict.state != last_logged_state or now - last_log_time >= self.log_interval:
                left = format_duration(self.deadline - now)
                self.log.info(
                    "%s: %s (elapsed %s, %s left)", self.describe(), verdict.state, self._elapsed(now), left
                )
                last_logged_state, last_log_time = verdict.state, now
            await asyncio.sleep(max(0.0, min(interval, self.deadline - now)))
            interval = min(interval * 2, self.poll_interval)

    async def _look(self, last: Verdict) -> tuple[Verdict, TriggerEvent | None]:
        """A verdict, or a final event when the look itself failed for good."""
        from google.api_core import exceptions as api_exceptions

        from gke_inference.errors import classify
        from gke_inference.hooks._retry import describe_error, http_status_of, is_transient

        try:
            if self._hook is None:
                self._hook = await asyncio.to_thread(self.make_hook)
            return await asyncio.to_thread(self.check, self._hook, time.time()), None
        except Exception as exc:
            gone = await asyncio.to_thread(self._what_vanished)
            if gone:  # final, named (gke_inference.vanished)
                return last, self.event(FAILED, f"{gone} (last error: {describe_error(exc)})")
            if http_status_of(exc) == 401:
                self._hook = None  # credentials or cluster endpoint changed: rebuild on the next poll
            elif not (is_transient(exc) or isinstance(exc, api_exceptions.RetryError)):
                verdict = classify(exc)
                status = FAILED if verdict.terminal else ERROR
                return last, self.event(status, f"{self.describe()}: {verdict.cause}")
            self.log.warning("%s: poll failed (%s); polling again", self.describe(), describe_error(exc))
            note = f"{last.state} (last poll failed: {describe_error(exc)})"
            return Verdict(state=note, result=last.result), None

    def _what_vanished(self) -> str | None:
        try:
            return self.what_vanished()
        except Exception:  # cannot tell: the original error stands
            return None

    def _elapsed(self, now: float) -> str:
        return format_duration(now - self.started_at)

    @staticmethod
    def event(status: str, message: str, result: Any = None) -> TriggerEvent:
        return TriggerEvent({"status": status, "message": message, "result": result})


def json_template(value: Any) -> str | None:
    """``value`` as JSON text in which each XComArg is a Jinja ``xcom_pull`` the triggerer renders,
    or None when some part of it cannot be put so (an XComArg with a mapping function, say)."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    from gke_inference.arguments import arrives_later

    if isinstance(value, PlainXComArg):
        # map_indexes=-1 (an unmapped task's) makes the pull a GetXCom: the triggerer's supervisor
        # does not answer the GetXComSequenceSlice of a pull without it (airflow 3.3.2,
        # airflow/jobs/triggerer_job_runner.py ToTriggerSupervisor; sdk task_runner.py xcom_pull).
        task_id, key = value.operator.task_id, value.key
        pull = f"ti.xcom_pull(task_ids={task_id!r}, key={key!r}, map_indexes=-1)"
        return "{{ " + pull + " | tojson }}"
    if isinstance(value, dict):
        items = [(json.dumps(str(key)), json_template(item)) for key, item in value.items()]
        if any(item is None for _, item in items):
            return None
        return "{" + ", ".join(f"{key}: {item}" for key, item in items) + "}"
    if isinstance(value, list | tuple):
        items = [json_template(item) for item in value]
        return None if None in items else "[" + ", ".join(items) + "]"
    if arrives_later(value):
        return None
    try:
        return json.dumps(value)
    except TypeError:  # not JSON: the worker starts the wait, as before
        return None


def start_trigger_args(sensor: Any, classpath: str, **plain: Any) -> StartTriggerArgs | None:
    """What the scheduler needs to start ``sensor``'s wait in the triggerer (``start_from_trigger``):
    each of its template fields as rendered JSON text, ``plain`` as it is; resumed in
    ``execute_complete`` like a deferral from ``execute``. None when a field cannot be rendered there.
    ``classpath`` is the trigger's, spelled out so that parsing the DAG imports no trigger module.
    """
    templated = {name: json_template(getattr(sensor, name)) for name in sensor.template_fields}
    if None in templated.values():
        return None
    return StartTriggerArgs(
        trigger_cls=classpath,
        trigger_kwargs={**templated, **plain, "rendered_json": sorted(templated)},
        next_method="execute_complete",
        next_kwargs=None,
        timeout=None,
    )
