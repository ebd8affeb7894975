"""Scheduler and kubelet, simulated: Pods get scheduled, their containers start, model servers load.

Timeline of a healthy pod (durations from the sandbox profile):
  created -> (pod_scheduling) -> scheduled, podIP, ContainerCreating -> Running, not Ready
          -> (model_load for model servers, pod_scheduling for others) -> Ready.
Failure modes, as on GKE: a missing ComputeClass keeps it Unschedulable; a missing Secret or key
gives CreateContainerConfigError (a missing ConfigMap or Secret volume keeps it ContainerCreating);
an empty Hugging Face token, or none for a gated model, makes vLLM exit (CrashLoopBackOff), and so
does a --max-model-len whose KV cache does not fit the GPUs the pod was scheduled on (vLLM's own
check, after the weights are loaded); the "pods_never_ready" behaviour keeps the readiness probe
failing.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.waits import wall_clock
from sandbox.dataplane.podspec import engine_startup_error
from sandbox.kube.controllers.base import ControlledCluster, Controller
from sandbox.kube.controllers.conditions import condition
from sandbox.kube.controllers.events import EventRecorder
from sandbox.kube.gpus import (
    NODE_ACCELERATOR_ANNOTATION,
    NODE_ACCELERATOR_COUNT_ANNOTATION,
    PodGpu,
    gpu_for,
)
from sandbox.kube.modelservers import (
    GATED_MODEL_PREFIXES,
    HF_TOKEN_FAILURE,
    HF_TOKEN_VARIABLES,
    is_model_server,
    served_model,
)
from sandbox.kube.store import now_timestamp, random_suffix

POD = ("v1", "Pod")
SECRET = ("v1", "Secret")
CONFIG_MAP = ("v1", "ConfigMap")
COMPUTE_CLASS = ("cloud.google.com/v1", "ComputeClass")
COMPUTE_CLASS_SELECTOR = "cloud.google.com/compute-class"
# Autopilot's own compute classes need no ComputeClass object.
BUILTIN_COMPUTE_CLASSES = frozenset(
    {"autopilot", "autopilot-spot", "Accelerator", "Balanced", "Performance", "Scale-Out"}
)
MAX_BACKOFF_FACTOR = 16


@dataclass
class PodProgress:
    scheduled_at: float | None = None
    started_at: float | None = None
    node_name: str = ""
    pod_ip: str = ""
    restarts: int = 0
    next_restart_at: float | None = None
    last_exit: str = ""
    exit_message: str = ""  # what the container prints before it exits, when it crash-loops
    seen_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None


class ConfigError(Exception):
    """A container's environment cannot be built (what kubelet calls CreateContainerConfigError)."""


class PodController(Controller):
    primary = POD
    watches = (SECRET, CONFIG_MAP, COMPUTE_CLASS)

    def __init__(self, cluster: ControlledCluster) -> None:
        super().__init__(cluster)
        self._progress: dict[str, PodProgress] = {}
        self.events = EventRecorder(self.store, "kubelet")
        self.autoscaler_events = EventRecorder(self.store, "cluster-autoscaler")

    def forget(self, pod: dict[str, Any]) -> None:
        self._progress.pop(pod["metadata"]["uid"], None)

    # -- the state machine ---------------------------------------------------------------------

    def reconcile(self, pod: dict[str, Any]) -> None:
        progress = self._progress.setdefault(pod["metadata"]["uid"], PodProgress())
        if progress.scheduled_at is None:
            self._schedule(pod, progress)
        elif progress.started_at is None:
            self._start_containers(pod, progress)
        else:
            self._run_containers(pod, progress)

    def _schedule(self, pod: dict[str, Any], progress: PodProgress) -> None:
        # Measured from when the controller first saw the pod: creationTimestamp has 1 s resolution.
        age = time.monotonic() - progress.seen_at
        if age < self.profile.pod_scheduling:
            self.reconcile_later(self.profile.pod_scheduling - age, pod)
            return
        blocker = self._unschedulable_because(pod)
        if blocker:
            self._write(
                pod,
                {
                    "phase": "Pending",
                    "conditions": [
                        condition(self._conditions(pod), "PodScheduled", False, "Unschedulable", blocker)
                    ],
                },
            )
            self.events.record(pod, "Warning", "FailedScheduling", blocker)
            return  # a ComputeClass event brings it back
        gpu = gpu_for(pod.get("spec") or {}, self._compute_class(pod))
        if gpu and not _zones_offering(self.cluster.region, gpu.type):
            self._no_scale_up(pod, gpu)
            return  # no zone of the region will ever offer it
        progress.scheduled_at = time.monotonic()
        progress.node_name = f"gk3-{self.cluster.name}-nap-{random_suffix(8)}"[:63]
        if gpu:
            pod = self._record_node_gpu(pod, gpu)
        progress.pod_ip = self.cluster.sandbox.addresses.allocate()
        where = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        self.events.record(
            pod, "Normal", "Scheduled", f"Successfully assigned {where} to {progress.node_name}"
        )
        self._start_containers(pod, progress)

    def _start_containers(self, pod: dict[str, Any], progress: PodProgress) -> None:
        if mount_failure := self._unmountable_volume(pod):
            statuses = [_waiting(c, "ContainerCreating", mount_failure) for c in _containers(pod)]
            self._write_scheduled(
                pod, progress, "Pending", statuses, ready=False, reason="ContainersNotReady"
            )
            self.events.record(pod, "Warning", "FailedMount", mount_failure)
            return  # a Secret or ConfigMap event brings it back
        try:
            environment = self._environments(pod)
        except ConfigError as error:
            statuses = [_waiting(c, "CreateContainerConfigError", str(error)) for c in _containers(pod)]
            self._write_scheduled(
                pod, progress, "Pending", statuses, ready=False, reason="ContainersNotReady"
            )
            self.events.record(pod, "Warning", "Failed", f"Error: {error}")
            return  # a Secret or ConfigMap event brings it back
        progress.started_at = time.monotonic()
        for container in _containers(pod):
            name = container["name"]
            self.events.record(pod, "Normal", "Started", f"Started container {name}", about=name)
        # vLLM downloads the weights first (a refused token ends it there), then sizes its KV cache.
        if self._hf_token_missing(pod, environment):
            progress.exit_message = HF_TOKEN_FAILURE
        elif is_model_server(pod):
            progress.exit_message = engine_startup_error(pod)
        if progress.exit_message:
            progress.next_restart_at = progress.started_at + self._startup_seconds(pod)
        self._run_containers(pod, progress)

    def _run_containers(self, pod: dict[str, Any], progress: PodProgress) -> None:
        now = time.monotonic()
        if progress.next_restart_at is not None:
            self._crash_loop(pod, progress, now)
            return
        loaded = now - (progress.started_at or now) >= self._startup_seconds(pod)
        if not loaded:
            self.reconcile_later(self._startup_seconds(pod) - (now - (progress.started_at or now)), pod)
        never_ready = loaded and self.behaviour(
            "pods_never_ready",
            namespace=pod["metadata"].get("namespace"),
            pod=pod["metadata"]["name"],
            app=(pod["metadata"].get("labels") or {}).get("app"),
        )
        ready = loaded and not never_ready
        if ready and progress.ready_at is None:
            progress.ready_at = now
            self._record_ready(pod, progress)
        if never_ready:
            self.events.record(
                pod, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"
            )
        started_at = self._started_timestamp(pod)
        statuses = [
            _running(c, started_at, ready=ready, restarts=progress.restarts) for c in _containers(pod)
        ]
        reason = "ContainersNotReady"
        self._write_scheduled(pod, progress, "Running", statuses, ready=ready, reason=reason)

    def _crash_loop(self, pod: dict[str, Any], progress: PodProgress, now: float) -> None:
        """vLLM exits (the Hub refuses the download, or the KV cache does not fit); kubelet restarts
        it with growing back-off."""
        assert progress.next_restart_at is not None
        if now < progress.next_restart_at and progress.restarts == 0:
            started_at = self._started_timestamp(pod)
            statuses = [_running(c, started_at, ready=False, restarts=0) for c in _containers(pod)]
            self._write_scheduled(
                pod, progress, "Running", statuses, ready=False, reason="ContainersNotReady"
            )
        else:
            if now >= progress.next_restart_at:
                progress.restarts += 1
                progress.last_exit = now_timestamp()
                base = max(self._startup_seconds(pod), 0.2)
                progress.next_restart_at = now + base * min(2 ** (progress.restarts - 1), MAX_BACKOFF_FACTOR)
                for container in _containers(pod):
                    name = container["name"]
                    message = f"Back-off restarting failed container {name} in pod {pod['metadata']['name']}"
                    self.events.record(pod, "Warning", "BackOff", message, again=True, about=name)
            statuses = [
                _crash_looping(c, progress.restarts, progress.last_exit, progress.exit_message)
                for c in _containers(pod)
            ]
            self._write_scheduled(
                pod, progress, "Running", statuses, ready=False, reason="ContainersNotReady"
            )
        self.reconcile_later(progress.next_restart_at - now, pod)

    def _record_ready(self, pod: dict[str, Any], progress: PodProgress) -> None:
        metadata = pod["metadata"]
        self.cluster.sandbox.waits.record(
            "pod",
            f"{metadata.get('namespace')}/{metadata['name']}",
            wall_clock(progress.seen_at),
            wall_clock(progress.ready_at or progress.seen_at),
            app=(metadata.get("labels") or {}).get("app"),
        )

    # -- checks --------------------------------------------------------------------------------

    def _no_scale_up(self, pod: dict[str, Any], gpu: PodGpu) -> None:
        """GKE finds no zone of the cluster's region offering the accelerator: node auto-provisioning
        creates no node, the pod stays Pending, and the cluster autoscaler says it did not scale up
        ("pod didn't trigger scale-up (it wouldn't fit if a new node is added)", its NotTriggerScaleUp
        event: kubernetes/autoscaler#1470; GKE's noScaleUp reasons:
        https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-autoscaler-visibility).
        The scheduler's condition message is the twin's wording."""
        region = self.cluster.region
        message = (
            f"0/0 nodes are available: Pod requests {gpu.count} x {gpu.type} GPU but no zone of region "
            f"{region} offers {gpu.type}; GKE cannot create nodes for it. preemption: 0/0 nodes are available."
        )
        condition_ = condition(self._conditions(pod), "PodScheduled", False, "Unschedulable", message)
        self._write(pod, {"phase": "Pending", "conditions": [condition_]})
        self.events.record(pod, "Warning", "FailedScheduling", message)
        self.autoscaler_events.record(
            pod,
            "Normal",
            "NotTriggerScaleUp",
            "pod didn't trigger scale-up (it wouldn't fit if a new node is added)",
        )

    def _compute_class(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        wanted = ((pod.get("spec") or {}).get("nodeSelector") or {}).get(COMPUTE_CLASS_SELECTOR)
        return self.store.get(*COMPUTE_CLASS, None, wanted) if wanted else None

    def _record_node_gpu(self, pod: dict[str, Any], gpu: PodGpu) -> dict[str, Any]:
        """The node GKE creates for the pod carries its GPU as labels; the twin has no Node objects,
        so the pod carries them (see sandbox/kube/gpus.py) for the engine and the data plane."""
        metadata = {k: v for k, v in pod["metadata"].items() if k != "resourceVersion"}
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            NODE_ACCELERATOR_ANNOTATION: gpu.type,
            NODE_ACCELERATOR_COUNT_ANNOTATION: str(gpu.count),
        }
        return self.store.replace({**pod, "metadata": metadata})

    def _unschedulable_because(self, pod: dict[str, Any]) -> str:
        wanted = ((pod.get("spec") or {}).get("nodeSelector") or {}).get(COMPUTE_CLASS_SELECTOR)
        if not wanted or wanted in BUILTIN_COMPUTE_CLASSES or self.store.get(*COMPUTE_CLASS, None, wanted):
            return ""
        return (
            f"0/0 nodes are available: Pod selects compute class {wanted!r} (nodeSelector "
            f"{COMPUTE_CLASS_SELECTOR}) but no ComputeClass named {wanted!r} exists in the cluster; "
            "GKE cannot create nodes for it. preemption: 0/0 nodes are available."
        )

    def _environments(self, pod: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Each container's environment, resolving secretKeyRef/configMapKeyRef the way kubelet does."""
        namespace = pod["metadata"].get("namespace")
        environments = {}
        for container in _containers(pod):
            environment: dict[str, str] = {}
            for variable in container.get("env") or []:
                value_from = variable.get("valueFrom") or {}
                if "secretKeyRef" in value_from:
                    value = self._referenced_value(SECRET, namespace, value_from["secretKeyRef"])
                elif "configMapKeyRef" in value_from:
                    value = self._referenced_value(CONFIG_MAP, namespace, value_from["configMapKeyRef"])
                else:
                    value = str(variable.get("value", ""))  # fieldRef and friends resolve to something
                if value is not None:
                    environment[variable["name"]] = value
            environments[container["name"]] = environment
        return environments

    def _referenced_value(
        self, source_kind: tuple[str, str], namespace: str | None, ref: dict[str, Any]
    ) -> str | None:
        name, key, optional = ref.get("name", ""), ref.get("key", ""), ref.get("optional", False)
        kind = source_kind[1]
        source = self.store.get(*source_kind, namespace, name)
        if source is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        data = source.get("data") or {}
        if key not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        return base64.b64decode(data[key]).decode(errors="replace") if kind == "Secret" else str(data[key])

    def _unmountable_volume(self, pod: dict[str, Any]) -> str:
        """Why a Secret or ConfigMap volume cannot be mounted yet ("" when all can)."""
        namespace = pod["metadata"].get("namespace")
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            for volume_type, source_kind, name_key in (
                ("configMap", CONFIG_MAP, "name"),
                ("secret", SECRET, "secretName"),
            ):
                source = volume.get(volume_type)
                if source is None or source.get("optional"):
                    continue
                name = source.get(name_key, "")
                if self.store.get(*source_kind, namespace, name) is None:
                    return (
                        f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                        f'{source_kind[1].lower()} "{name}" not found'
                    )
        return ""

    @staticmethod
    def _hf_token_missing(pod: dict[str, Any], environments: dict[str, dict[str, str]]) -> bool:
        """A model server whose Hugging Face token is declared but empty, or that serves a gated
        model with no token at all: the Hub answers 401 and vLLM exits."""
        for container in _containers(pod):
            environment = environments.get(container["name"], {})
            declared = [v["name"] for v in container.get("env") or [] if v.get("name") in HF_TOKEN_VARIABLES]
            if declared and not any(environment.get(name, "").strip() for name in declared):
                return True
            if not declared and served_model(container).startswith(GATED_MODEL_PREFIXES):
                return True
        return False

    def _startup_seconds(self, pod: dict[str, Any]) -> float:
        """Model servers load weights first; other containers (EPP, BBR) are up almost at once."""
        return self.profile.model_load if is_model_server(pod) else self.profile.pod_scheduling

    # -- writing status ------------------------------------------------------------------------

    def _write_scheduled(
        self,
        pod: dict[str, Any],
        progress: PodProgress,
        phase: str,
        statuses: list[dict[str, Any]],
        *,
        ready: bool,
        reason: str,
    ) -> None:
        previous = self._conditions(pod)
        not_ready_message = "" if ready else _not_ready_message(statuses)
        status = {
            "phase": phase,
            "conditions": [
                condition(
                    previous,
                    "PodReadyToStartContainers",
                    phase == "Running",
                    "" if phase == "Running" else "Pending",
                ),
                condition(previous, "Initialized", True, ""),
                condition(previous, "Ready", ready, "" if ready else reason, not_ready_message),
                condition(previous, "ContainersReady", ready, "" if ready else reason, not_ready_message),
                condition(previous, "PodScheduled", True, ""),
            ],
            "hostIP": "10.0.0.2",
            "podIP": progress.pod_ip,
            "podIPs": [{"ip": progress.pod_ip}],
            "startTime": self._started_timestamp(pod) or now_timestamp(),
            "containerStatuses": statuses,
            "qosClass": "Burstable",
        }
        if pod["spec"].get("nodeName") != progress.node_name:
            updated = dict(pod)
            updated["spec"] = {**pod["spec"], "nodeName": progress.node_name}
            updated["metadata"] = {k: v for k, v in pod["metadata"].items() if k != "resourceVersion"}
            self.store.replace(updated)
        self._write(pod, status)

    def _write(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        self.store.update_status(*POD, metadata.get("namespace"), metadata["name"], status)

    @staticmethod
    def _conditions(pod: dict[str, Any]) -> list[dict[str, Any]]:
        return (pod.get("status") or {}).get("conditions") or []

    @staticmethod
    def _started_timestamp(pod: dict[str, Any]) -> str:
        return (pod.get("status") or {}).get("startTime") or ""


def _zones_offering(region: str, accelerator: str) -> list[str]:
    """The zones of `region` that offer `accelerator`, from the Compute twin's accelerator table
    (sandbox/gcp/accelerators.py, which also serves Compute's acceleratorTypes). Until that table
    exists every accelerator counts as offered."""
    try:
        from sandbox.gcp.accelerators import zones_offering  # noqa: PLC0415 -- the table lives with Compute
    except ImportError:
        return [f"{region}-a"]
    return zones_offering(region, accelerator)


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return (pod.get("spec") or {}).get("containers") or []


def _base_status(container: dict[str, Any], restarts: int) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "restartCount": restarts,
    }


def _waiting(container: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    return {
        **_base_status(container, 0),
        "ready": False,
        "started": False,
        "state": {"waiting": {"reason": reason, "message": message}},
        "lastState": {},
    }


def _running(container: dict[str, Any], started_at: str, *, ready: bool, restarts: int) -> dict[str, Any]:
    return {
        **_base_status(container, restarts),
        "ready": ready,
        "started": True,
        "state": {"running": {"startedAt": started_at or now_timestamp()}},
        "lastState": {},
        "containerID": f"containerd://{container['name']}",
    }


def _crash_looping(
    container: dict[str, Any], restarts: int, finished_at: str, message: str
) -> dict[str, Any]:
    return {
        **_base_status(container, restarts),
        "ready": False,
        "started": False,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off restarting failed container {container['name']} in pod",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": message,
                "finishedAt": finished_at,
            }
        },
    }


def _not_ready_message(statuses: list[dict[str, Any]]) -> str:
    names = [s["name"] for s in statuses if not s.get("ready")]
    return f"containers with unready status: [{' '.join(names)}]" if names else ""
