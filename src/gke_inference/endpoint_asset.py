"""The verified endpoint as an Airflow Asset, so other DAGs (a load test, an evaluation) can be
scheduled on it.

The endpoint's identity (project, region, cluster, Gateway) is only known at run time (the run's
params, resolved by plan_run), but a task's ``outlets=`` is fixed at parse time. So the DAG's tasks
declare one parse-time ``AssetAlias`` and, at run time, attach an event for the concrete Asset to
it; Airflow creates that Asset on its first event and queues every DAG scheduled on the alias
(airflow/models/taskinstance.py ``register_asset_events``, "Dynamically creating AssetModel").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

from gke_inference.timing import record_timing

ENDPOINT_ALIAS = AssetAlias(name="gke_inference_gateway.endpoint")
# An "x-" scheme is Airflow's convention for a custom one: kept as written, no normalizer needed
# (airflow/sdk/definitions/asset/__init__.py `_sanitize_uri`).
SCHEME = "x-gke-inference-gateway"
UP, GONE = "up", "gone"
PLAN_TASK_ID = "plan_run"


def endpoint_asset(plan: Mapping[str, Any]) -> Asset:
    """``x-gke-inference-gateway://<project>/<region>/<cluster>/<namespace>/<gateway>``."""
    parts = [plan[key] for key in ("project_id", "region", "cluster_name", "namespace", "gateway_name")]
    return Asset(uri=f"{SCHEME}://{'/'.join(parts)}")


def announce_up(
    context: Mapping[str, Any], plan: Mapping[str, Any], *, gateway_url: str, gke_version: str | None
) -> dict[str, Any]:
    """Attach the 'verified and serving' event to the alias; return its extra."""
    extra = {
        "state": UP,
        "gateway_url": gateway_url,
        "model": plan["model_name"],
        "gke_version": gke_version,
        "inference_extension_version": plan["inference_extension_version"],
        "bbr_version": plan["bbr_version"],
        "run_id": context["run_id"],
    }
    context["outlet_events"][ENDPOINT_ALIAS].add(endpoint_asset(plan), extra=extra)
    return extra


def announce_gone(context: Mapping[str, Any], result: Any = None) -> None:
    """``post_execute`` of the teardown's last delete: the endpoint is gone. Also records the task's
    timing, the DAG's default ``post_execute`` this one replaces."""
    record_timing(context, result)
    plan = context["ti"].xcom_pull(task_ids=PLAN_TASK_ID)
    extra = {"state": GONE, "run_id": context["run_id"]}
    context["outlet_events"][ENDPOINT_ALIAS].add(endpoint_asset(plan), extra=extra)
