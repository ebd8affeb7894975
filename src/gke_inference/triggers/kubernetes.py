"""Triggers that wait on the cluster's Kubernetes API: model pods Ready and the Gateway's address
(tutorial 4.1), and the CRDs GKE serves itself (2.2), in the shape of ``triggers.polling``. They end
early, with the reason, when waiting cannot help (a crash-looping pod, an image that cannot be
pulled), and otherwise at an absolute deadline with the last state they saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gke_inference.kube_objects import find_condition
from gke_inference.triggers.polling import PollingTrigger, Verdict, format_duration

if TYPE_CHECKING:
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
# Seconds one poll may spend retrying transient errors: the loop polls again anyway, and a failed
# poll is the moment to look at whether the cluster is gone.
POLL_RETRY_BUDGET = 5.0

# Container waiting reasons that do not clear up by themselves.
FATAL_WAITING_REASONS = {
    "CrashLoopBackOff": "the container keeps exiting",
    "CreateContainerConfigError": "the container cannot be configured (a Secret or key it needs is missing?)",
    "CreateContainerError": "the container cannot be created",
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
}


# What a model server prints when Hugging Face refuses the download: a missing or invalid token.
HUGGING_FACE_AUTH_MARKERS = ("gated repo", "401 Client Error", "Hugging Face token")
HUGGING_FACE_HINT = (
    "the Hugging Face token looks missing or invalid: check the huggingface_default connection and "
    "the hf-token Secret made from it (tutorial 3.2)"
)


# What vLLM exits with when one request of max_model_len tokens does not fit the KV cache the
# GPUs leave after the weights (vllm/v1/core/kv_cache_utils.py; the V0 engine's wording second).
KV_CACHE_MARKERS = (
    "larger than the available KV cache memory",
    "maximum number of tokens that can be stored in KV cache",
    "No available memory for the cache blocks",
)
KV_CACHE_HINT = (
    "the model's max_model_len does not fit the KV cache the GPUs leave after the weights: lower the "
    "max_model_len param, or use a bigger gpu_type or a larger gpu_count (tutorial 3.2)"
)


PROXY_ONLY_SUBNET_HINT = "; the VPC needs an ACTIVE proxy-only subnet in the region (tutorial 1.3)"


@dataclass
class _PodProblems:
    fatal: list[str] = field(default_factory=list)
    unschedulable: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (find_condition(pod, "Ready") or {}).get("status") == "True"


def _container_problems(pod_name: str, statuses: Iterable[Mapping[str, Any]], problems: _PodProblems) -> None:
    for status in statuses:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if not reason or reason in {"ContainerCreating", "PodInitializing"}:
            continue
        where = f"pod {pod_name} container {status.get('name')}: {reason}"
        if reason in FATAL_WAITING_REASONS:
            details = [FATAL_WAITING_REASONS[reason]]
            if waiting.get("message"):
                details.append(waiting["message"])
            last_exit = (status.get("lastState") or {}).get("terminated") or {}
            if last_exit.get("message"):
                details.append(f"last exit: {last_exit['message']}")
            restarts = status.get("restartCount")
            if restarts:
                details.append(f"{restarts} restarts")
            if any(marker.lower() in " ".join(details).lower() for marker in HUGGING_FACE_AUTH_MARKERS):
                details.append(HUGGING_FACE_HINT)
            if any(marker in last_exit.get("message", "") for marker in KV_CACHE_MARKERS):
                details.append(KV_CACHE_HINT)
            problems.fatal.append(f"{where} ({'; '.join(details)})")
        else:
            problems.waiting.append(where)


def assess_pods(pods: Iterable[Mapping[str, Any]], replicas: int) -> Verdict:
    """Ready when at least ``replicas`` matching pods are Ready; failed on a fatal container state."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    ready = sorted(p["metadata"]["name"] for p in live if is_pod_ready(p))
    problems = _PodProblems()
    for pod in live:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        scheduled = find_condition(pod, "PodScheduled") or {}
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            problems.unschedulable.append(f"pod {name} unschedulable: {scheduled.get('message', '')}".strip())
        _container_problems(name, status.get("initContainerStatuses") or [], problems)
        _container_problems(name, status.get("containerStatuses") or [], problems)
    state = f"{len(ready)}/{replicas} Ready ({len(live)} pods)"
    details = problems.fatal + problems.unschedulable + problems.waiting
    if details:
        state += ": " + "; ".join(details)
    if len(ready) >= replicas:
        return Verdict(state=state, done=True, result={"ready": len(ready), "pods": ready})
    if problems.fatal:
        return Verdict(state=state, failure="; ".join(problems.fatal))
    return Verdict(state=state, unschedulable=bool(problems.unschedulable))


def assess_gateway(gateway: Mapping[str, Any] | None, name: str) -> Verdict:
    """Done when the Gateway has an address and Programmed=True; the XCom value is the address."""
    if gateway is None:
        return Verdict(state=f"Gateway {name} does not exist yet")
    addresses = (gateway.get("status") or {}).get("addresses") or []
    address = addresses[0].get("value") if addresses else None
    programmed = find_condition(gateway, "Programmed") or {}
    if address and programmed.get("status") == "True":
        return Verdict(state=f"Gateway {name} programmed at {address}", done=True, result=address)
    accepted = find_condition(gateway, "Accepted") or {}
    if accepted.get("status") == "False":
        reason = f"{accepted.get('reason', '')}: {accepted.get('message', '')}".strip(": ")
        return Verdict(state=f"Gateway {name} not accepted ({reason})")
    if programmed.get("status") == "False":
        reason = f"{programmed.get('reason', '')}: {programmed.get('message', '')}".strip(": ")
        hint = PROXY_ONLY_SUBNET_HINT if "proxy-only" in reason.lower() else ""
        return Verdict(state=f"Gateway {name} not programmed ({reason}){hint}")
    return Verdict(state=f"Gateway {name} waiting for an address (no Programmed condition yet)")


class KubernetesPollingTrigger(PollingTrigger):
    """A wait on the cluster's Kubernetes API, in ``namespace``. After a failed poll it looks at
    whether the cluster is gone, being deleted or broken (``gke_inference.vanished``)."""

    def __init__(self, *, namespace: str, **kwargs: Any) -> None:
        self.namespace = namespace  # before super(), whose begin() may read it
        super().__init__(**kwargs)

    def wait_kwargs(self) -> dict[str, Any]:
        return {"namespace": self.namespace}

    def make_hook(self) -> ClusterKubernetesHook:
        from gke_inference.hooks._retry import transient_retry

        hook = self.target.kube_hook()
        hook.retry_policy = transient_retry(timeout=POLL_RETRY_BUDGET)
        hook.dynamic_client  # noqa: B018 -- connect and discover now, in the worker thread
        return hook

    def what_vanished(self) -> str | None:
        from gke_inference.vanished import cluster_vanished

        return cluster_vanished(self.target.gke_hook(), self.target.cluster_name, self.target.project_id)


class PodsReadyTrigger(KubernetesPollingTrigger):
    """Waits until ``replicas`` pods matching ``label_selector`` are Ready.

    Pods that stay Unschedulable longer than ``unschedulable_grace`` seconds fail the wait (on
    Autopilot, GPU pods are Unschedulable for a while as normal, until their node is provisioned).
    """

    classpath = "gke_inference.triggers.kubernetes.PodsReadyTrigger"

    def __init__(
        self,
        *,
        label_selector: str | Mapping[str, str],
        replicas: int,
        unschedulable_grace: float | None = 600.0,
        unschedulable_since: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.label_selector = label_selector
        self.replicas = replicas
        self.unschedulable_grace = unschedulable_grace  # None: the whole wait
        self.unschedulable_since = unschedulable_since
        super().__init__(**kwargs)

    def begin_wait(self) -> None:
        from gke_inference.kube_objects import format_label_selector

        selector = format_label_selector(self.label_selector)
        if not selector:
            raise ValueError("PodsReadySensor needs a non-empty label_selector")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"replicas must be an int of at least 1, got {self.replicas!r}")
        self.label_selector = selector
        grace = self.unschedulable_grace
        self.unschedulable_grace = self.deadline - self.started_at if grace is None else float(grace)

    def wait_kwargs(self) -> dict[str, Any]:
        return {
            **super().wait_kwargs(),
            "label_selector": self.label_selector,
            "replicas": self.replicas,
            "unschedulable_grace": self.unschedulable_grace,
            "unschedulable_since": self.unschedulable_since,
        }

    def describe(self) -> str:
        return f"pods {self.label_selector} in {self.namespace}"

    def check(self, hook: ClusterKubernetesHook, now: float) -> Verdict:
        pods = hook.list("v1", "Pod", namespace=self.namespace, label_selector=self.label_selector)
        if not pods:
            return Verdict(state=f"no pods match {self.label_selector} yet")
        verdict = assess_pods(pods, self.replicas)
        if not verdict.unschedulable:
            self.unschedulable_since = None
            return verdict
        if self.unschedulable_since is None:
            self.unschedulable_since = now
        stuck_for = now - self.unschedulable_since
        if stuck_for > self.unschedulable_grace:
            return Verdict(
                state=verdict.state,
                failure=f"unschedulable for {format_duration(stuck_for)}: {verdict.state}",
            )
        return verdict


class GatewayAddressTrigger(KubernetesPollingTrigger):
    """Waits until the Gateway has an address and reports Programmed=True."""

    classpath = "gke_inference.triggers.kubernetes.GatewayAddressTrigger"

    def __init__(self, *, gateway_name: str, **kwargs: Any) -> None:
        self.gateway_name = gateway_name
        super().__init__(**kwargs)

    def wait_kwargs(self) -> dict[str, Any]:
        return {**super().wait_kwargs(), "gateway_name": self.gateway_name}

    def describe(self) -> str:
        return f"Gateway {self.namespace}/{self.gateway_name}"

    def check(self, hook: ClusterKubernetesHook, now: float) -> Verdict:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            gateway = hook.get(GATEWAY_API_VERSION, "Gateway", self.gateway_name, self.namespace)
        except ResourceNotFoundError:
            return Verdict(state="the cluster does not serve the Gateway API yet")
        if gateway is None:  # the DAG applied it before this wait: it was deleted out of band
            from gke_inference.vanished import object_vanished

            gone = object_vanished(hook, self.namespace, gateway=self.gateway_name)
            return Verdict(state=f"Gateway {self.gateway_name} does not exist", failure=gone)
        return assess_gateway(gateway, self.gateway_name)


class ServedCrdsTrigger(KubernetesPollingTrigger):
    """Waits until the cluster serves every named CRD (it exists and is Established).

    CRDs that GKE installs itself (the v1 InferencePool from 1.34.0-gke.1626000) can reach the
    cluster some time after it is RUNNING. The success event's result is ``xcom_value``, what the
    deferred task returns.
    """

    classpath = "gke_inference.triggers.kubernetes.ServedCrdsTrigger"

    def __init__(
        self,
        *,
        crd_names: Iterable[str],
        cluster_version: str,
        xcom_value: Any = None,
        namespace: str = "",
        **kwargs: Any,
    ) -> None:
        self.crd_names = sorted(crd_names)
        self.cluster_version = cluster_version
        self.xcom_value = xcom_value
        super().__init__(namespace=namespace, **kwargs)

    def wait_kwargs(self) -> dict[str, Any]:
        return {
            **super().wait_kwargs(),
            "crd_names": self.crd_names,
            "cluster_version": self.cluster_version,
            "xcom_value": self.xcom_value,
        }

    def describe(self) -> str:
        return f"CRD {', '.join(self.crd_names)} on GKE {self.cluster_version}"

    def check(self, hook: ClusterKubernetesHook, now: float) -> Verdict:
        from gke_inference.hooks.kubernetes import CRD_API_VERSION

        missing = []
        for name in self.crd_names:
            crd = hook.get(CRD_API_VERSION, "CustomResourceDefinition", name)
            if crd is None or (find_condition(crd, "Established") or {}).get("status") != "True":
                missing.append(name)
        if missing:
            return Verdict(state=f"not served yet: {', '.join(missing)}")
        return Verdict(state="served", done=True, result=self.xcom_value)
