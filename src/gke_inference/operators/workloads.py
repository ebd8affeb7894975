"""Apply and delete the tutorial's manifests on the cluster (tutorial 3.x, 5.1; teardown).

Every write is a server-side apply under one field manager, so a rerun changes nothing that is
already right. Manifests come from include/manifests/ rendered with ``values`` (the run's plan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gke_inference import manifests
from gke_inference.arguments import arrives_later
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast, is_service_disabled
from gke_inference.kube_objects import object_ref
from gke_inference.results import summarize

# The hooks pull in the Kubernetes and Google clients; they are imported where a task runs, never
# when the scheduler parses the DAG.

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
        step: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
            return [
                obj for path in self.manifests for obj in manifests.render(path, values, owner=self.ownership)
            ]
        except manifests.ManifestError as exc:
            raise AirflowFailException(f"{exc} ({self.step})") from None

    def execute(self, context: Context) -> dict[str, list[str]]:
        objects = self.render(context)
        with failing_fast(f"Applying {', '.join(self.manifests)} ({self.step})"):
            results = self.kube_hook.apply(objects)
        summary = summarize(results)
        self.log.info("Applied %d objects: %s", len(results), {k: len(v) for k, v in summary.items()})
        return summary


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
        namespace: str,
        values: Mapping[str, Any],
        manifest: str | Sequence[str] = WORKLOAD_MANIFESTS,
        delete_hf_secret: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifests = [manifest] if isinstance(manifest, str) else list(manifest)
        self.namespace = namespace
        _check_values(values)
        self.values = values
        self.delete_hf_secret = delete_hf_secret

    def objects_to_delete(self, context: Context) -> list[dict]:
        values = _values_of(self.values)
        objects = [
            obj for path in self.manifests for obj in manifests.render(path, values, owner=self.ownership)
        ]
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
                results = self.kube_hook.delete(objects, owner=self.ownership)
            except Exception as exc:
                if not (_is_not_found(exc) or is_service_disabled(exc)):
                    raise
                self.log.info("Cluster %s does not exist; nothing to delete", self.cluster_name)
                return absent
        return summarize(results)

    def _why_no_workloads(self) -> str | None:
        from gke_inference.hooks.gke import not_serving

        hook = self.kube_hook
        cluster = hook.gke_hook.find_cluster(self.cluster_name, hook.target.project_id)
        return not_serving(cluster, self.cluster_name)


def _check_values(values: Any) -> None:
    if not isinstance(values, Mapping) and not arrives_later(values):
        raise TypeError(f"values must be a mapping (the run's plan), got {type(values).__name__}")


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
