"""Deferrable sensors for the tutorial's readiness waits (4.1): the Gateway's address, model pods Ready.

By default they start in the triggerer (``start_from_trigger``: no worker slot held while GKE
provisions GPUs or the load balancer, none even before the wait); where nothing starts them there
(``dag.test``) ``execute`` defers at once to the same trigger. With ``deferrable=False`` they poke
the same checks from the worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from gke_inference.arguments import check_when_built, seconds
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.links import GatewayConsoleLink

if TYPE_CHECKING:
    # The triggers pull in the Kubernetes client: imported when a task runs, not when the DAG parses.
    from gke_inference.triggers.kubernetes import (
        GatewayAddressTrigger,
        KubernetesPollingTrigger,
        PodsReadyTrigger,
    )

# The trigger ends the wait itself with the last state it saw; the deferral timeout is a backstop.
DEFER_TIMEOUT_MARGIN = 60.0


class _ClusterWaitSensor(ClusterTaskMixin, BaseSensorOperator):
    """Shared wiring: cluster arguments, a templated wait timeout, and trigger event handling.

    :param wait_timeout: seconds to wait (a number, or an XComArg such as ``plan["pods_timeout"]``);
        ``timeout=`` is accepted as an alias, since BaseSensorOperator's own ``timeout`` cannot be one.
    :param poll_interval: seconds between looks at the cluster.
    :param log_interval: seconds between progress lines.
    :param tutorial_step: named in failure messages (e.g. "5.1" for the body-based router's pods).
    """

    template_fields: Sequence[str] = (
        *ClusterTaskMixin.cluster_template_fields,
        "namespace",
        "wait_timeout",
    )

    def __init__(
        self,
        *,
        wait_timeout: float | None = None,
        namespace: str = "default",
        poll_interval: float = 5.0,
        log_interval: float = 30.0,
        deferrable: bool = True,
        tutorial_step: str = "4.1",
        **kwargs: Any,
    ) -> None:
        if wait_timeout is None:
            wait_timeout = kwargs.pop("timeout", None)
        if wait_timeout is None:
            raise ValueError("wait_timeout (seconds) is required")
        check_when_built(seconds, wait_timeout, "wait_timeout")
        kwargs.setdefault("poke_interval", poll_interval)
        kwargs.setdefault("mode", "poke")
        super().__init__(**kwargs)
        self.tutorial_step = f"tutorial {tutorial_step}"
        self.namespace = namespace
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.log_interval = log_interval
        self.deferrable = deferrable

    def _wait_seconds(self) -> float:
        try:
            return seconds(self.wait_timeout, "wait_timeout")
        except ValueError as err:
            raise AirflowFailException(str(err)) from None

    def _trigger_kwargs(self, started_at: float, wait_seconds: float) -> dict[str, Any]:
        return {
            **self.cluster_target.to_dict(),
            "namespace": self.namespace,
            "started_at": started_at,
            "deadline": started_at + wait_seconds,
            "poll_interval": self.poll_interval,
            "log_interval": self.log_interval,
        }

    def make_trigger(self, started_at: float, wait_seconds: float) -> KubernetesPollingTrigger:
        raise NotImplementedError

    def _start_in_triggerer(self, classpath: str, **plain: Any) -> None:
        """When deferrable, the scheduler hands the first wait to the triggerer (no worker before it
        defers); ``execute`` still defers by itself where nothing does that (``dag.test``).
        Called at the end of each sensor's ``__init__``, once every template field is set."""
        from gke_inference.triggers.polling import start_trigger_args

        if not self.deferrable:
            return
        plain |= {"poll_interval": self.poll_interval, "log_interval": self.log_interval}
        self.start_trigger_args = start_trigger_args(self, classpath, **plain)
        self.start_from_trigger = self.start_trigger_args is not None

    def execute(self, context: Context) -> Any:
        wait_seconds = self._wait_seconds()
        if not self.deferrable:
            self.timeout = wait_seconds
            return super().execute(context)
        self.defer(
            trigger=self.make_trigger(time.time(), wait_seconds),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait_seconds + DEFER_TIMEOUT_MARGIN),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        status, message = event.get("status"), event.get("message", "")
        if status == "success":
            self.log.info("%s", message)
            return event.get("result")
        if status == "timeout":
            raise AirflowSensorTimeout(f"{message} ({self.tutorial_step})")
        if status == "error":  # neither transient nor terminal: the task retries
            raise RuntimeError(f"{message} ({self.tutorial_step})")
        raise AirflowFailException(f"{message} ({self.tutorial_step})")

    def poke(self, context: Context) -> PokeReturnValue:
        trigger = self.make_trigger(time.time(), self._wait_seconds())
        verdict = trigger.check(self.kube_hook, time.time())
        self.log.info("%s: %s", trigger.describe(), verdict.state)
        if verdict.failure:
            raise AirflowFailException(
                f"{trigger.describe()} cannot succeed: {verdict.failure} ({self.tutorial_step})"
            )
        return PokeReturnValue(is_done=verdict.done, xcom_value=verdict.result)


class PodsReadySensor(_ClusterWaitSensor):
    """Wait until ``replicas`` pods matching ``label_selector`` are Ready (``kubectl wait
    --for=condition=Ready pod -l app=...``). Fails at once on CrashLoopBackOff, image pull errors
    or a missing Secret. Unschedulable pods are reported; by default they may stay so for the whole
    wait (Autopilot's GPU node provisioning can take longer than any fixed grace), or for
    ``unschedulable_grace`` seconds when given.

    XCom: ``{"ready": <count>, "pods": [<names>]}``.
    """

    template_fields: Sequence[str] = (*_ClusterWaitSensor.template_fields, "label_selector", "replicas")

    def __init__(
        self,
        *,
        label_selector: Mapping[str, str] | str,
        replicas: int = 1,
        unschedulable_grace: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.label_selector = label_selector
        _check_replicas(replicas)
        self.replicas = replicas
        self.unschedulable_grace = unschedulable_grace
        self._start_in_triggerer(
            "gke_inference.triggers.kubernetes.PodsReadyTrigger", unschedulable_grace=unschedulable_grace
        )

    def make_trigger(self, started_at: float, wait_seconds: float) -> PodsReadyTrigger:
        from gke_inference.kube_objects import format_label_selector
        from gke_inference.triggers.kubernetes import PodsReadyTrigger

        selector = format_label_selector(self.label_selector)
        if not selector:
            raise AirflowFailException("PodsReadySensor needs a non-empty label_selector")
        return PodsReadyTrigger(
            **self._trigger_kwargs(started_at, wait_seconds),
            label_selector=selector,
            replicas=self._replicas(),
            unschedulable_grace=wait_seconds
            if self.unschedulable_grace is None
            else self.unschedulable_grace,
        )

    def _replicas(self) -> int:
        try:
            _check_replicas(self.replicas, at_run_time=True)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(str(err)) from None
        return self.replicas


def _check_replicas(replicas: object, at_run_time: bool = False) -> None:
    from gke_inference.arguments import arrives_later

    if not at_run_time and arrives_later(replicas):
        return
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise TypeError(f"replicas must be an int, got {replicas!r}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")


class GatewayAddressSensor(_ClusterWaitSensor):
    """Wait until the Gateway has an address and Programmed=True (``kubectl get gateway NAME -o
    jsonpath='{.status.addresses[0].value}'``). While it is not programmed, the reason is logged
    (e.g. no proxy-only subnet in the region); at the timeout the failure names the last reason.

    XCom: the address (a string).
    """

    template_fields: Sequence[str] = (*_ClusterWaitSensor.template_fields, "gateway_name")
    operator_extra_links = (GatewayConsoleLink(),)

    def __init__(self, *, gateway_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway_name = gateway_name
        self._start_in_triggerer("gke_inference.triggers.kubernetes.GatewayAddressTrigger")

    def make_trigger(self, started_at: float, wait_seconds: float) -> GatewayAddressTrigger:
        from gke_inference.triggers.kubernetes import GatewayAddressTrigger

        return GatewayAddressTrigger(
            **self._trigger_kwargs(started_at, wait_seconds), gateway_name=self.gateway_name
        )
