"""Airflow-side package of the GKE Inference Gateway DAG: hooks, operators, sensors and triggers."""
