"""The one cluster target: which GKE cluster, and through which connection and identity.

Every operator, sensor, trigger and check that talks to the cluster builds its hooks from a
``ClusterTarget``, so the impersonation chain reaches the Container API and the Kubernetes API
alike. Importing this module loads no client library (the hooks are imported where built).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from gke_inference.hooks.gke import GKEClusterHook
    from gke_inference.hooks.kubernetes import ClusterKubernetesHook

DEFAULT_GCP_CONN_ID = "google_cloud_default"


@dataclass(frozen=True)
class ClusterTarget:
    """A GKE cluster and how to reach it. ``to_dict()`` (keyword arguments of this class) carries it
    through a trigger's serialization."""

    cluster_name: str
    location: str
    project_id: str | None = None
    gcp_conn_id: str = DEFAULT_GCP_CONN_ID
    impersonation_chain: str | Sequence[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.impersonation_chain, tuple):
            data["impersonation_chain"] = list(self.impersonation_chain)  # JSON has no tuples
        return data

    def gcp_hook_kwargs(self) -> dict[str, Any]:
        return {"gcp_conn_id": self.gcp_conn_id, "impersonation_chain": self.impersonation_chain}

    def gke_hook(self) -> GKEClusterHook:
        from gke_inference.hooks.gke import GKEClusterHook

        return GKEClusterHook(location=self.location, **self.gcp_hook_kwargs())

    def kube_hook(self) -> ClusterKubernetesHook:
        from gke_inference.hooks.kubernetes import ClusterKubernetesHook

        return ClusterKubernetesHook(**self.to_dict())


class ClusterTaskMixin:
    """The cluster arguments (templated) of a task, and the hooks built from them."""

    cluster_template_fields: ClassVar[tuple[str, ...]] = (
        "cluster_name",
        "location",
        "project_id",
        "gcp_conn_id",
        "impersonation_chain",
    )

    def _init_cluster(
        self,
        cluster_name: str,
        location: str,
        project_id: str | None,
        gcp_conn_id: str,
        impersonation_chain: str | Sequence[str] | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.location = location
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

    @property
    def cluster_target(self) -> ClusterTarget:
        """Built from the rendered arguments (call it at run time, not in ``__init__``)."""
        return ClusterTarget(
            cluster_name=self.cluster_name,
            location=self.location,
            project_id=self.project_id or None,
            gcp_conn_id=self.gcp_conn_id,
            impersonation_chain=self.impersonation_chain or None,
        )

    @cached_property
    def kube_hook(self) -> ClusterKubernetesHook:
        return self.cluster_target.kube_hook()
