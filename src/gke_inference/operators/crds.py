"""The tutorial's CRDs (2.2): choose the set by the cluster's GKE version, install it, and wait
for the CRDs GKE installs itself."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseBranchOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.arguments import arrives_later
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast
from gke_inference.gke_version import MANAGED_INFERENCE_POOL_SINCE, serves_inference_pool_crd
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.results import summarize

if TYPE_CHECKING:
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook

# The hooks pull in the Kubernetes and Google clients; they are imported where a task runs, never
# when the scheduler parses the DAG.

# The tutorial's two CRD branches (2.2): GKE >= 1.34.0-gke.1626000 serves the v1 InferencePool CRD
# itself, so only InferenceObjective is ours; older clusters get the whole v1.0.0 manifests.yaml set.
CRD_SETS: Mapping[str, tuple[str, ...]] = {
    "objective_only": ("crds/inference-objective-v1alpha2.yaml",),
    "full": ("crds",),
}
GKE_SERVED_CRDS: Mapping[str, tuple[str, ...]] = {
    "objective_only": ("inferencepools.inference.networking.k8s.io",),
    "full": (),
}


class InstallCrdsOperator(ApplyManifestsOperator):
    """Install one of the tutorial's CRD sets (2.2) and wait until the API server serves them.

    With "objective_only", the v1 InferencePool CRD is GKE's to install, which it does some time
    after the cluster is RUNNING: the task then waits for it, deferred, for up to
    ``managed_crds_timeout`` seconds (on a cluster older than 1.34.0-gke.1626000 it fails at once).

    :param crd_set: "objective_only" (GKE >= 1.34.0-gke.1626000) or "full" (older clusters).
    :param established_timeout: seconds to wait for the CRDs we install to become Established.
    :param managed_crds_timeout: seconds to wait for the CRDs GKE installs itself.
    :param poll_interval: seconds between looks while waiting for them.
    """

    def __init__(
        self,
        *,
        crd_set: str,
        established_timeout: float = 120.0,
        managed_crds_timeout: float = 600.0,
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        crd_set = crd_set.replace("-", "_")
        if crd_set not in CRD_SETS:
            raise ValueError(f"crd_set must be one of {sorted(CRD_SETS)}, not {crd_set!r}")
        kwargs.setdefault("step", f"tutorial 2.2, {crd_set} CRD set")
        super().__init__(manifest=list(CRD_SETS[crd_set]), **kwargs)
        self.crd_set = crd_set
        self.established_timeout = established_timeout
        self.managed_crds_timeout = managed_crds_timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        objects = self.render(context)
        hook = self.kube_hook
        with failing_fast(f"Installing the CRDs ({self.step})"):
            results = hook.apply(objects)
            hook.wait_for_crds_established(
                [obj["metadata"]["name"] for obj in objects], timeout=self.established_timeout
            )
            missing = self._missing_gke_served_crds(hook)
            version = self._cluster_version(hook) if missing else None
        result = {"crd_set": self.crd_set, **summarize(results)}
        if not missing:
            return result
        if not serves_inference_pool_crd(version):
            raise AirflowFailException(
                f"The cluster (GKE {version}) does not serve CRD {', '.join(missing)}, which GKE provides "
                f"from {MANAGED_INFERENCE_POOL_SINCE} on; install the full CRD set instead ({self.step})"
            )
        self._defer_until_served(missing, version, result)
        return result  # not reached: defer raises

    def _missing_gke_served_crds(self, hook: ClusterKubernetesHook) -> list[str]:
        from gke_inference.hooks.kubernetes import CRD_API_VERSION

        return [
            name
            for name in GKE_SERVED_CRDS[self.crd_set]
            if hook.get(CRD_API_VERSION, "CustomResourceDefinition", name) is None
        ]

    def _cluster_version(self, hook: ClusterKubernetesHook) -> str:
        cluster = hook.gke_hook.get_cluster(self.cluster_name, hook.target.project_id)
        return cluster.current_master_version

    def _defer_until_served(self, missing: list[str], version: str, result: dict[str, Any]) -> None:
        from gke_inference.triggers.kubernetes import ServedCrdsTrigger

        started_at = time.time()
        self.log.info(
            "GKE %s installs %s itself, some time after the cluster is RUNNING; waiting up to %.0f s",
            version,
            ", ".join(missing),
            self.managed_crds_timeout,
        )
        self.defer(
            trigger=ServedCrdsTrigger(
                **self.cluster_target.to_dict(),
                crd_names=missing,
                cluster_version=version,
                xcom_value=result,
                started_at=started_at,
                deadline=started_at + self.managed_crds_timeout,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            # The trigger ends the wait itself; this is a backstop.
            timeout=timedelta(seconds=self.managed_crds_timeout + 60),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        # What to return travels in the trigger: `airflow dags test` drops the defer() kwargs.
        status, message = event.get("status"), event.get("message", "")
        if status == "success":
            self.log.info("%s", message)
            return event["result"]
        if status == "timeout":
            names = " ".join(GKE_SERVED_CRDS[self.crd_set])
            raise AirflowFailException(
                f"{message}. GKE installs it itself from {MANAGED_INFERENCE_POOL_SINCE} on, some time "
                f"after the cluster is RUNNING; check `kubectl get crd {names}`, then clear this task to "
                f"wait again ({self.step})"
            )
        raise AirflowFailException(f"{message} ({self.step})")


class ChooseCrdSetOperator(ClusterTaskMixin, BaseBranchOperator):
    """Pick the CRD branch (tutorial 2.2) from the cluster's GKE version.

    :param cluster: the cluster sensor's result (``wait_cluster_running.output``), a mapping with
        ``current_master_version``; when None, the version is read from the Container API (then
        cluster_name and location are needed).
    :param objective_only_task_id: the task that installs only the InferenceObjective CRD.
    :param full_set_task_id: the task that installs the full v1.0.0 set.
    """

    template_fields: Sequence[str] = (*ClusterTaskMixin.cluster_template_fields, "cluster")
    cluster_required = False  # given the sensor's result, it needs no cluster to ask

    def __init__(
        self,
        *,
        objective_only_task_id: str,
        full_set_task_id: str,
        cluster: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if cluster is not None and not isinstance(cluster, Mapping) and not arrives_later(cluster):
            raise TypeError(f"cluster must be the cluster sensor's result (a mapping), got {cluster!r}")
        self.cluster = cluster
        self.objective_only_task_id = objective_only_task_id
        self.full_set_task_id = full_set_task_id

    def _read_cluster_version(self) -> str:
        if not (self.cluster_name and self.location):
            raise AirflowFailException(
                "No cluster version given and no cluster_name/location to read it from"
            )
        target = self.cluster_target
        return target.gke_hook().get_cluster(target.cluster_name, target.project_id).current_master_version

    def choose_branch(self, context: Context) -> str:
        version = (self.cluster or {}).get("current_master_version") or self._read_cluster_version()
        try:
            managed = serves_inference_pool_crd(version)
        except ValueError as exc:
            raise AirflowFailException(f"{exc} (tutorial 2.2)") from None
        branch = self.objective_only_task_id if managed else self.full_set_task_id
        self.log.info(
            "GKE %s %s %s: continuing with %s",
            version,
            ">=" if managed else "<",
            MANAGED_INFERENCE_POOL_SINCE,
            branch,
        )
        return branch
