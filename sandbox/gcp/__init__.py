"""The GCP REST control plane: Service Usage, Compute networks, GKE clusters, long-running operations."""
