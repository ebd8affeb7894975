"""A Kubernetes API server twin, one per sandbox GKE cluster, with simulated controllers."""
