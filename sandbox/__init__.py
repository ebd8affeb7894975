"""A local twin of the GCP and GKE APIs the DAG uses, served from one asyncio process on loopback."""
