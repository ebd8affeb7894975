"""A short, bounded load test through the Gateway of the endpoint last announced as an Asset event."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gke_inference.endpoint_asset import ENDPOINT_ALIAS, GONE
from gke_inference.operators.checks import GatewayNotReadyError, post_chat_completion

CHAT_PATH = "/v1/chat/completions"


def endpoint_event(context: Mapping[str, Any]) -> Any:
    """The event this run is for: the one that triggered it, else (a manual run) the latest one."""
    try:
        triggering = context["triggering_asset_events"][ENDPOINT_ALIAS]
    except KeyError:
        triggering = []
    if triggering:
        return triggering[-1]
    announced = list(context["inlet_events"][ENDPOINT_ALIAS])
    if not announced:
        raise AirflowSkipException(f"No endpoint was announced on {ENDPOINT_ALIAS.name} yet")
    return announced[-1]


class GatewayLoadTestOperator(BaseOperator):
    """POST ``requests`` chat completions, ``concurrency`` at a time, to the announced gateway.

    Skips when the endpoint's latest event says it is gone; fails when fewer than
    ``min_success_ratio`` of the requests got an HTTP 200 with content.
    XCom: the endpoint, counts per status, latency percentiles (seconds) and the serving pods.
    """

    template_fields: Sequence[str] = ("requests", "concurrency", "prompt", "max_tokens", "min_success_ratio")

    def __init__(
        self,
        *,
        requests: int = 20,
        concurrency: int = 4,
        prompt: str = "Say hello",
        max_tokens: int = 16,
        min_success_ratio: float = 0.95,
        request_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(inlets=[ENDPOINT_ALIAS], **kwargs)
        self.requests = requests
        self.concurrency = concurrency
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.min_success_ratio = min_success_ratio
        self.request_timeout = request_timeout

    def execute(self, context) -> dict[str, Any]:
        event = endpoint_event(context)
        extra = dict(event.extra or {})
        if extra.get("state") == GONE:
            raise AirflowSkipException(f"{event.asset.uri} is gone (run {extra.get('run_id')})")
        url = extra["gateway_url"].rstrip("/") + CHAT_PATH
        self.log.info(
            "Load test of %s: %d requests, %d at a time, to %s",
            event.asset.uri,
            self.requests,
            self.concurrency,
            url,
        )
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            timed = list(pool.map(lambda _: self._one(url, extra["model"]), range(self.requests)))
        summary = summarize(timed)
        summary.update(endpoint=event.asset.uri, gateway_url=extra["gateway_url"], model=extra["model"])
        self.log.info("Load test result: %s", summary)
        if summary["ok"] < self.min_success_ratio * self.requests:
            raise AirflowFailException(
                f"Only {summary['ok']} of {self.requests} requests succeeded through {url}: {summary['statuses']}"
            )
        return summary

    def _one(self, url: str, model: str) -> tuple[str, float, str | None]:
        started = time.monotonic()
        try:
            reply = post_chat_completion(url, model, self.prompt, self.max_tokens, self.request_timeout)
        except GatewayNotReadyError:
            return "connection error", time.monotonic() - started, None
        status = "200" if reply.status == 200 and reply.content.strip() else str(reply.status)
        return status, time.monotonic() - started, reply.serving_pod


def summarize(timed: Sequence[tuple[str, float, str | None]]) -> dict[str, Any]:
    latencies = sorted(seconds for status, seconds, _ in timed if status == "200")
    statuses = Counter(status for status, _, _ in timed)
    return {
        "requests": len(timed),
        "ok": statuses.get("200", 0),
        "statuses": dict(statuses),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[max(0, round(0.95 * len(latencies)) - 1)], 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
        "served_by": dict(Counter(pod for status, _, pod in timed if status == "200" and pod)),
    }
