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

from gke_inference.ownership import Owner

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
    """The cluster arguments of a task, templated, and the hooks built from them.

    Put first among a task's bases; it takes the cluster keywords (a ``ClusterTarget``'s fields, as
    the DAG passes them in ``**cluster_target``) and hands every other keyword on to the operator.
    A task that can run without a cluster sets ``cluster_required = False``.
    """

    cluster_template_fields: ClassVar[tuple[str, ...]] = (
        "cluster_name",
        "location",
        "project_id",
        "gcp_conn_id",
        "impersonation_chain",
    )
    cluster_required: ClassVar[bool] = True

    def __init__(
        self,
        *,
        cluster_name: str | None = None,
        location: str | None = None,
        project_id: str | None = None,
        gcp_conn_id: str = DEFAULT_GCP_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.cluster_required and (cluster_name is None or location is None):
            raise TypeError(f"{type(self).__name__} needs cluster_name and location")
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.location = location
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

    @property
    def ownership(self) -> Owner:
        """Whose marks this task's DAG (its environment) puts on what it creates and deletes."""
        return Owner.of_dag(self.dag_id)

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
