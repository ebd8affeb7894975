"""
### GKE Inference Gateway: load test of the verified endpoint

Scheduled on the endpoint Asset that `gke_inference_gateway` announces when its checks pass
(the `gke_inference_gateway.endpoint` alias): a short, bounded load test through the Gateway, whose
URL and model come from the event's `extra`. An event saying the endpoint is gone (the teardown's)
makes the run skip. Triggered by hand, it load-tests the endpoint last announced.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from gke_inference.endpoint_asset import ENDPOINT_ALIAS
from gke_inference.operators.load_test import GatewayLoadTestOperator

with DAG(
    dag_id="gke_inference_load_test",
    description="A short load test through the Gateway each time the verified endpoint is announced",
    doc_md=__doc__,
    schedule=[ENDPOINT_ALIAS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    params={
        "requests": Param(20, type="integer", minimum=1, maximum=500, title="Requests in all"),
        "concurrency": Param(4, type="integer", minimum=1, maximum=32, title="Requests at a time"),
        "max_tokens": Param(16, type="integer", minimum=1, maximum=512, title="max_tokens per request"),
        "min_success_ratio": Param(
            0.95, type="number", minimum=0, maximum=1, title="Fail below this share of HTTP 200s"
        ),
    },
    # A gateway that refuses too many requests may be a moment's trouble: ask again a little later.
    default_args={"owner": "platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["gke", "inference-gateway", "load-test"],
) as dag:
    GatewayLoadTestOperator(
        task_id="load_test",
        requests="{{ params.requests }}",
        concurrency="{{ params.concurrency }}",
        max_tokens="{{ params.max_tokens }}",
        min_success_ratio="{{ params.min_success_ratio }}",
        # Bounded whatever the gateway does: requests x timeout could otherwise run for hours.
        execution_timeout=timedelta(minutes=10),
        doc_md=(
            "POSTs `requests` chat completions, `concurrency` at a time, to the Gateway URL and model "
            "named in the endpoint Asset event's `extra`; its XCom has the counts per HTTP status, "
            "the p50/p95/max latency of the successful ones and the pods that served them. Skips when "
            "the latest event says the endpoint is gone; fails below `min_success_ratio`. By hand: "
            "the same requests as `curl -X POST <gateway_url>/v1/chat/completions -d '{\"model\": ...}'`."
        ),
    )
