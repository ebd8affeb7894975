"""How the DAG marks what it owns, so teardown removes its own resources and nothing else.

Each environment (``gke_inference.environments``) is its own DAG, ``gke_inference_gateway__<name>``,
and its marks carry the name: two environments in one project never own each other's objects, and
the DAG of no environment (``gke_inference_gateway``) owns only objects with no environment mark.
The DAG id is the one thing a task always knows about itself, so the owner is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass

DAG_ID = "gke_inference_gateway"
ENVIRONMENT_SEPARATOR = "__"

OWNER_LABEL_KEY = "managed-by"
OWNER_LABEL_VALUE = "airflow-gke-inference-gateway"
K8S_OWNER_LABEL_KEY = "app.kubernetes.io/managed-by"
# A plain key: valid as a GCP resource label and as a Kubernetes label alike.
ENVIRONMENT_LABEL_KEY = "airflow-environment"


def environment_dag_id(environment: str | None) -> str:
    return DAG_ID if environment is None else f"{DAG_ID}{ENVIRONMENT_SEPARATOR}{environment}"


@dataclass(frozen=True)
class Owner:
    """The marks of one environment's objects (``environment`` None: the DAG of no environment)."""

    environment: str | None = None

    @classmethod
    def of_dag(cls, dag_id: str | None) -> Owner:
        """The owner a task of ``dag_id`` acts for; any DAG id but an environment's is the default."""
        prefix, separator, environment = (dag_id or "").partition(ENVIRONMENT_SEPARATOR)
        return cls(environment if separator and prefix == DAG_ID and environment else None)

    def _with_environment(self, labels: dict[str, str]) -> dict[str, str]:
        if self.environment is not None:
            labels[ENVIRONMENT_LABEL_KEY] = self.environment
        return labels

    @property
    def gcp_labels(self) -> dict[str, str]:
        """GKE clusters carry resource labels."""
        return self._with_environment({OWNER_LABEL_KEY: OWNER_LABEL_VALUE})

    @property
    def network_description(self) -> str:
        """Compute networks and subnetworks have no labels, so their description carries the mark."""
        return f"Managed by Airflow DAG {environment_dag_id(self.environment)}"

    @property
    def k8s_labels(self) -> dict[str, str]:
        return self._with_environment({K8S_OWNER_LABEL_KEY: OWNER_LABEL_VALUE})

    def owns_gcp_labels(self, labels: dict[str, str] | None) -> bool:
        return carries_gcp_marks(labels, self.gcp_labels)

    def owns_network_description(self, description: str | None) -> bool:
        # Exact: "...gke_inference_gateway" is a prefix of every environment's description.
        return description == self.network_description

    def owns_k8s_object(self, obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels")
        return _same_marks(labels, K8S_OWNER_LABEL_KEY, self.environment)


def carries_gcp_marks(labels: dict[str, str] | None, marks: dict[str, str]) -> bool:
    """Whether a GCP resource's ``labels`` carry exactly the owner ``marks`` (an Owner's
    ``gcp_labels``): another environment's resource has the same managed-by label, so the
    environment label (or its absence) must match too; other labels do not matter."""
    labels = labels or {}
    return all(labels.get(key) == marks.get(key) for key in (OWNER_LABEL_KEY, ENVIRONMENT_LABEL_KEY))


def _same_marks(labels: dict[str, str] | None, owner_key: str, environment: str | None) -> bool:
    labels = labels or {}
    return labels.get(owner_key) == OWNER_LABEL_VALUE and labels.get(ENVIRONMENT_LABEL_KEY) == environment


# The DAG of no environment's marks, the ones every object carried before environments existed.
DEFAULT_OWNER = Owner()
GCP_LABELS = DEFAULT_OWNER.gcp_labels
NETWORK_DESCRIPTION = DEFAULT_OWNER.network_description
K8S_LABELS = DEFAULT_OWNER.k8s_labels
