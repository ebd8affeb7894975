"""Operators that put the tutorial's Kubernetes objects on the cluster (tutorial 2.2, 3.x, 5.1).

Every write is a server-side apply under one field manager, so a rerun changes nothing that is
already right. Manifests come from include/manifests/ rendered with ``values`` (the run's plan).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseBranchOperator, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gke_inference import manifests
from gke_inference.arguments import arrives_later
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast, is_service_disabled
from gke_inference.gke_version import MANAGED_INFERENCE_POOL_SINCE, serves_inference_pool_crd
from gke_inference.manifests import object_ref
from gke_inference.ownership import K8S_LABELS
from gke_inference.results import one

if TYPE_CHECKING:
    from gke_inference.hooks.kubernetes import KubernetesApplyHook

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
# What teardown removes by default: every workload manifest the DAG applies (not the CRDs, which
# other workloads on the cluster may use).
WORKLOAD_MANIFESTS = (
    "model-inference-class.yaml",
    "vllm-llama3-1-8b-instruct.yaml",
    "inferencepool",
    "gateway.yaml",
    "body-based-router",
    "body-routing.yaml",
)
# Where each manifest comes in the tutorial, for failure messages.
TUTORIAL_STEPS: Mapping[str, str] = {
    "crds": "tutorial 2.2",
    "model-inference-class.yaml": "tutorial 3.1",
    "vllm-llama3-1-8b-instruct.yaml": "tutorial 3.2",
    "inferencepool": "tutorial 3.3",
    "gateway.yaml": "tutorial 3.4",
    "body-based-router": "tutorial 5.1",
    "body-routing.yaml": "tutorial 5.1",
}
GATEWAY_API_KINDS = ("HTTPRoute", "Gateway")


def _values_of(values: Any) -> dict[str, Any]:
    """The values the manifests are rendered with (templates see them as ``params``)."""
    if not isinstance(values, Mapping):
        raise AirflowFailException(f"values must be a mapping (the run's plan), got {type(values).__name__}")
    return dict(values)


class ApplyManifestsOperator(ClusterTaskMixin, BaseOperator):
    """Render manifest templates with ``values`` and server-side apply them in order.

    :param manifest: a template file or directory under include/manifests/, or a list of them.
    :param values: what the templates see as ``params``: the run's plan (``plan_run.output``).
    :param step: the tutorial step, named in failure messages.
    XCom: ``{"created": [...], "updated": [...], "unchanged": [...]}`` of ``Kind/namespace/name``.
    """

    template_fields: Sequence[str] = (*ClusterTaskMixin.cluster_template_fields, "values")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        manifest: str | Sequence[str],
        values: Mapping[str, Any],
        cluster_name: str,
        location: str,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        step: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_cluster(cluster_name, location, project_id, gcp_conn_id, impersonation_chain)
        self.manifests = [manifest] if isinstance(manifest, str) else list(manifest)
        if not self.manifests:
            raise ValueError("ApplyManifestsOperator needs at least one manifest")
        _check_values(values)
        self.values = values
        steps = (TUTORIAL_STEPS.get(path.split("/")[0], f"apply {path}") for path in self.manifests)
        self.step = step or ", ".join(dict.fromkeys(steps))

    def render(self, context: Context) -> list[dict]:
        values = _values_of(self.values)
        try:
            return [obj for path in self.manifests for obj in manifests.render(path, values)]
        except manifests.ManifestError as exc:
            raise AirflowFailException(f"{exc} ({self.step})") from None

    def execute(self, context: Context) -> dict[str, list[str]]:
        objects = self.render(context)
        with failing_fast(f"Applying {', '.join(self.manifests)} ({self.step})"):
            results = self.kube_hook.apply(objects)
        summary = _summarize(results)
        self.log.info("Applied %d objects: %s", len(results), {k: len(v) for k, v in summary.items()})
        return summary


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
        result = {"crd_set": self.crd_set, **_summarize(results)}
        if not missing:
            return result
        if not serves_inference_pool_crd(version):
            raise AirflowFailException(
                f"The cluster (GKE {version}) does not serve CRD {', '.join(missing)}, which GKE provides "
                f"from {MANAGED_INFERENCE_POOL_SINCE} on; install the full CRD set instead ({self.step})"
            )
        self._defer_until_served(missing, version, result)
        return result  # not reached: defer raises

    def _missing_gke_served_crds(self, hook: KubernetesApplyHook) -> list[str]:
        from gke_inference.hooks.kubernetes import CRD_API_VERSION

        return [
            name
            for name in GKE_SERVED_CRDS[self.crd_set]
            if hook.get(CRD_API_VERSION, "CustomResourceDefinition", name) is None
        ]

    def _cluster_version(self, hook: KubernetesApplyHook) -> str:
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

    def __init__(
        self,
        *,
        objective_only_task_id: str,
        full_set_task_id: str,
        cluster: Mapping[str, Any] | None = None,
        cluster_name: str | None = None,
        location: str | None = None,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_cluster(cluster_name, location, project_id, gcp_conn_id, impersonation_chain)
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


class HuggingFaceSecretOperator(ClusterTaskMixin, BaseOperator):
    """Write the Hugging Face token from an Airflow connection into the ``hf-token`` Secret (3.2).

    The token is read at run time from the connection's password; it never appears in a template
    field, a log line, XCom or an error message.
    XCom: ``{"created"|"updated"|"unchanged": ["Secret/<namespace>/hf-token"], "key": "token"}``.
    """

    template_fields: Sequence[str] = (
        *ClusterTaskMixin.cluster_template_fields,
        "hf_conn_id",
        "namespace",
    )

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        namespace: str,
        hf_conn_id: str = "huggingface_default",
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_cluster(cluster_name, location, project_id, gcp_conn_id, impersonation_chain)
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id

    def _read_token(self) -> str:
        from gke_inference.hooks.huggingface import HubTokenError, hub_token

        try:
            return hub_token(self.hf_conn_id)[0]
        except HubTokenError as err:
            raise AirflowFailException(str(err)) from None

    def secret_object(self, token: str, namespace: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": manifests.NAMES["hf_secret"],
                "namespace": namespace,
                "labels": K8S_LABELS,
            },
            "stringData": {manifests.NAMES["hf_secret_key"]: token},
        }

    def execute(self, context: Context) -> dict[str, str]:
        secret = self.secret_object(self._read_token(), self.namespace)
        with failing_fast("Writing the hf-token Secret (tutorial 3.2)"):
            result = self.kube_hook.apply_one(secret, sensitive=True)
        return one(result.action, object_ref(secret), key=manifests.NAMES["hf_secret_key"])


class DeleteManifestsOperator(ClusterTaskMixin, BaseOperator):
    """Teardown: delete what the given manifests describe, in reverse order, and only objects that
    carry the DAG's ownership label. Missing objects, or a missing cluster, count as done.

    :param manifest: template files or directories under include/manifests/, in apply order
        (default: every workload manifest; the CRDs stay).
    :param values: what the templates see as ``params``: the run's plan (``plan_run.output``).
    :param namespace: where the ``hf-token`` Secret is.
    :param delete_hf_secret: also delete the ``hf-token`` Secret.
    XCom: ``{"deleted": [...], "absent": [...], "not_owned": [...]}`` (gke_inference.results).
    """

    template_fields: Sequence[str] = (*ClusterTaskMixin.cluster_template_fields, "namespace", "values")

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        namespace: str,
        values: Mapping[str, Any],
        manifest: str | Sequence[str] = WORKLOAD_MANIFESTS,
        delete_hf_secret: bool = True,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_cluster(cluster_name, location, project_id, gcp_conn_id, impersonation_chain)
        self.manifests = [manifest] if isinstance(manifest, str) else list(manifest)
        self.namespace = namespace
        _check_values(values)
        self.values = values
        self.delete_hf_secret = delete_hf_secret

    def objects_to_delete(self, context: Context) -> list[dict]:
        values = _values_of(self.values)
        objects = [obj for path in self.manifests for obj in manifests.render(path, values)]
        if self.delete_hf_secret:
            objects.insert(0, _secret_ref(self.namespace))
        unique = {object_ref(obj): obj for obj in objects}  # e.g. llm-route is in two manifests
        # Routes and Gateways first: GKE then starts removing the load balancer while the rest goes.
        return sorted(reversed(unique.values()), key=lambda obj: obj["kind"] not in GATEWAY_API_KINDS)

    def execute(self, context: Context) -> dict[str, list[str]]:
        objects = self.objects_to_delete(context)
        absent = {"absent": [object_ref(obj) for obj in objects]}
        with failing_fast("Deleting the workloads (teardown)"):
            try:
                # A cluster that is gone, being deleted, ERROR or DEGRADED has no API to delete through;
                # its workloads go with it, and what GKE built for its Gateway is swept later.
                reason = self._why_no_workloads()
                if reason:
                    self.log.info("Nothing to delete on the cluster: %s", reason)
                    return absent
                results = self.kube_hook.delete(objects, owned_only=True)
            except Exception as exc:
                if not (_is_not_found(exc) or is_service_disabled(exc)):
                    raise
                self.log.info("Cluster %s does not exist; nothing to delete", self.cluster_name)
                return absent
        return _summarize(results)

    def _why_no_workloads(self) -> str | None:
        from gke_inference.hooks.gke import not_serving

        hook = self.kube_hook
        cluster = hook.gke_hook.find_cluster(self.cluster_name, hook.target.project_id)
        return not_serving(cluster, self.cluster_name)


def _check_values(values: Any) -> None:
    if not isinstance(values, Mapping) and not arrives_later(values):
        raise TypeError(f"values must be a mapping (the run's plan), got {type(values).__name__}")


def _summarize(results) -> dict[str, list[str]]:
    from gke_inference.hooks.kubernetes import summarize as summarize_results

    return summarize_results(results)


def _is_not_found(exc: BaseException) -> bool:
    """The cluster itself is gone (the Container API's 404)."""
    from google.api_core import exceptions as api_exceptions

    return isinstance(exc, api_exceptions.NotFound)


def _secret_ref(namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": manifests.NAMES["hf_secret"], "namespace": namespace},
    }
