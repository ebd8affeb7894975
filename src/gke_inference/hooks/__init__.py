"""Hooks that talk to GCP (Service Usage, Compute networks, GKE) and to the cluster's Kubernetes API."""
