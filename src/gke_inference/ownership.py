"""How the DAG marks what it owns, so teardown removes its own resources and nothing else."""

DAG_ID = "gke_inference_gateway"

OWNER_LABEL_KEY = "managed-by"
OWNER_LABEL_VALUE = "airflow-gke-inference-gateway"

# GKE clusters carry resource labels; Compute networks and subnetworks have none, so their
# description carries the mark instead.
GCP_LABELS = {OWNER_LABEL_KEY: OWNER_LABEL_VALUE}
NETWORK_DESCRIPTION = f"Managed by Airflow DAG {DAG_ID}"

K8S_OWNER_LABEL_KEY = "app.kubernetes.io/managed-by"
K8S_LABELS = {K8S_OWNER_LABEL_KEY: OWNER_LABEL_VALUE}


def is_owned_gcp_labels(labels: dict[str, str] | None) -> bool:
    return (labels or {}).get(OWNER_LABEL_KEY) == OWNER_LABEL_VALUE


def is_owned_network_description(description: str | None) -> bool:
    return (description or "").startswith(NETWORK_DESCRIPTION)


def is_owned_k8s_object(obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(K8S_OWNER_LABEL_KEY) == OWNER_LABEL_VALUE
