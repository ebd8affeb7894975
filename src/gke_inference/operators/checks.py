"""End-to-end checks through the Gateway (tutorial 4.2 and 5.1), as the tutorial's curl commands.

Transient answers (5xx, 429, connection errors, timeouts, the load balancer's 404 while a route is
still being programmed) raise a plain error so that Airflow retries the task; answers that no
retry can change raise AirflowFailException with the cause.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from gke_inference.arguments import arrives_later
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import is_transient_status

REPLY_PREVIEW_CHARS = 300
_EXPECTATIONS = {"accepted": 200, "rejected": 404}
MAX_REPLY_CHARS = 2000
# A route change reaches every proxy of a real GKE load balancer over tens of seconds, so a model
# that must be refused is asked again for this long before its acceptance counts as final.
ROUTE_PROPAGATION_WINDOW = 60.0
ROUTE_RECHECK_INTERVAL = 5.0


class GatewayNotReadyError(AirflowException):
    """The gateway answered in a way that may change on a later attempt."""


@dataclass(frozen=True)
class GatewayReply:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def is_model_server_error(self) -> bool:
        """True for vLLM's own OpenAI-style error body (``"object": "error"``), which means the
        request got past the gateway's routing and reached a model server."""
        body = self.json
        return isinstance(body, dict) and body.get("object") == "error"

    @property
    def content(self) -> str:
        body = self.json
        try:
            return body["choices"][0]["message"]["content"] or ""
        except (TypeError, KeyError, IndexError):
            return ""

    @property
    def serving_pod(self) -> str | None:
        return self.headers.get("x-inference-pod") or self.headers.get("x-gateway-destination-endpoint")

    def preview(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= REPLY_PREVIEW_CHARS else text[:REPLY_PREVIEW_CHARS] + "..."


def chat_completion_url(address: str | None, port: int) -> str:
    address = (address or "").strip()
    if not address:
        raise AirflowFailException(
            "No gateway address to check; did the Gateway address wait succeed? (tutorial 4.1)"
        )
    try:
        _check_int(port, "port")
    except TypeError as err:
        raise AirflowFailException(str(err)) from None
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}/v1/chat/completions" if port == 80 else f"http://{host}:{port}/v1/chat/completions"


def post_chat_completion(url: str, model: str, prompt: str, max_tokens: int, timeout: float) -> GatewayReply:
    """POST one chat completion; connection failures and timeouts are transient."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    }
    try:
        # trust_env=False: the gateway is reached directly, never through a proxy from the environment.
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.post(url, json=payload)
    except httpx.TransportError as exc:
        raise GatewayNotReadyError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
    return GatewayReply(
        response.status_code, response.text, {k.lower(): v for k, v in response.headers.items()}
    )


def raise_for_unexpected(reply: GatewayReply, url: str, model: str, step: str) -> None:
    """Classify anything but a 200 with content: retryable or terminal."""
    where = f"POST {url} with model {model!r} -> HTTP {reply.status}"
    if is_transient_status(reply.status):
        raise GatewayNotReadyError(f"{where}: {reply.preview()} ({step})")
    if reply.status == 404 and reply.is_model_server_error:
        raise AirflowFailException(
            f"{where}: the model server does not serve this model: {reply.preview()} ({step})"
        )
    if reply.status == 404:
        raise GatewayNotReadyError(
            f"{where}: no route matched yet (the load balancer may still be programming) ({step})"
        )
    if reply.status != 200:
        raise AirflowFailException(f"{where}: {reply.preview()} ({step})")
    if not reply.content.strip():
        raise AirflowFailException(f"{where} but the reply has no choices[0].message.content ({step})")


# What the DAG's prompt and max_tokens params default to: a check built without them asks the same.
DEFAULT_PROMPT = "GKE Inference Gatewayについて一言で"
DEFAULT_MAX_TOKENS = 100


def _check_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")


class _GatewayCheck(ClusterTaskMixin, BaseOperator):
    """Shared by the checks. With ``cluster_name`` and ``location``, an answer that would be retried
    first looks at what the check depends on (the cluster, the Gateway, the InferencePool) and fails
    for good, naming it, when one is gone."""

    cluster_required = False  # without cluster arguments, a check looks only at the gateway
    template_fields: Sequence[str] = (
        "gateway_address",
        "port",
        "model",
        "prompt",
        "max_tokens",
        *ClusterTaskMixin.cluster_template_fields,
        "namespace",
        "gateway_name",
        "pool_name",
    )

    def __init__(
        self,
        *,
        gateway_address: str,
        model: str,
        prompt: str = DEFAULT_PROMPT,
        port: int = 80,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        request_timeout: float = 120.0,
        namespace: str = "default",
        gateway_name: str = "",
        pool_name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for value, name in ((port, "port"), (max_tokens, "max_tokens")):
            if not arrives_later(value):
                _check_int(value, name)
        self.gateway_address = gateway_address
        self.port = port
        self.model = model
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.request_timeout = request_timeout
        self.namespace = namespace
        self.gateway_name = gateway_name
        self.pool_name = pool_name

    @contextmanager
    def naming_what_vanished(self) -> Generator[None, None, None]:
        try:
            yield
        except GatewayNotReadyError as exc:
            gone = self.what_vanished()
            if gone:
                raise AirflowFailException(f"{gone} (last error: {exc})") from None
            raise

    def what_vanished(self) -> str | None:
        if not (self.cluster_name and self.location):
            return None
        from gke_inference.vanished import what_vanished

        return what_vanished(self.kube_hook, self.namespace, gateway=self.gateway_name, pool=self.pool_name)

    def _ask(self) -> tuple[str, GatewayReply]:
        url = chat_completion_url(self.gateway_address, self.port)
        self.log.info("POST %s model=%s max_tokens=%s", url, self.model, self.max_tokens)
        return url, post_chat_completion(url, self.model, self.prompt, self.max_tokens, self.request_timeout)

    def _success(self, reply: GatewayReply) -> dict[str, Any]:
        self.log.info(
            "HTTP %s from %s: %s", reply.status, reply.serving_pod or "the gateway", reply.preview()
        )
        return {"status": reply.status, "reply": reply.content[:MAX_REPLY_CHARS], "pod": reply.serving_pod}


class ChatCompletionCheckOperator(_GatewayCheck):
    """Send the tutorial's chat completion through the Gateway (4.2) and require a reply.

    XCom: ``{"status": 200, "reply": <text>, "pod": <serving pod or endpoint>}``.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        with self.naming_what_vanished():
            url, reply = self._ask()
            raise_for_unexpected(reply, url, self.model, "tutorial 4.2")
        return self._success(reply)


class ModelRoutingCheckOperator(_GatewayCheck):
    """Body-based routing check (5.1): the served model must get 200, any other model must get the
    gateway's own 404.

    A 404 whose body is vLLM's error means the request still reached a model server, i.e. the
    model-only route is not in effect; a 200 for another model means it was accepted. Either is
    asked again for ``route_propagation_window`` seconds (the new route may still be spreading to
    the load balancer's proxies), then fails the task without retries.
    :param expect_status: 200 (the served model) or 404 (a model that must be refused); or
    :param expect: "accepted" (= 200) or "rejected" (= 404).
    XCom: ``{"status": ..., "reply": ..., "pod": ...}``.
    """

    def __init__(
        self,
        *,
        expect_status: int | None = None,
        expect: str | None = None,
        route_propagation_window: float = ROUTE_PROPAGATION_WINDOW,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if expect is not None:
            if expect not in _EXPECTATIONS or expect_status not in (None, _EXPECTATIONS[expect]):
                raise ValueError(
                    f"expect must be 'accepted' or 'rejected' (and agree with expect_status), not {expect!r}"
                )
            expect_status = _EXPECTATIONS[expect]
        if expect_status is None or int(expect_status) not in (200, 404):
            raise ValueError(f"expect_status must be 200 or 404, not {expect_status!r}")
        if route_propagation_window < 0:
            raise ValueError(
                f"route_propagation_window must be >= 0 seconds, not {route_propagation_window!r}"
            )
        self.expect_status = int(expect_status)
        self.route_propagation_window = route_propagation_window

    def execute(self, context: Context) -> dict[str, Any]:
        with self.naming_what_vanished():
            return self._check()

    def _check(self) -> dict[str, Any]:
        url, reply = self._ask()
        if self.expect_status == 200:
            raise_for_unexpected(reply, url, self.model, "tutorial 5.1")
            return self._success(reply)
        deadline = time.monotonic() + self.route_propagation_window
        while _reached_a_model_server(reply) and (remaining := deadline - time.monotonic()) > 0:
            self.log.info(
                "Model %r still reaches a model server (HTTP %s); the route may still be propagating, "
                "asking again (%.0f s left)",
                self.model,
                reply.status,
                remaining,
            )
            time.sleep(min(ROUTE_RECHECK_INTERVAL, remaining))
            url, reply = self._ask()
        return self._expect_gateway_404(url, reply)

    def _expect_gateway_404(self, url: str, reply: GatewayReply) -> dict[str, Any]:
        where = f"POST {url} with model {self.model!r} -> HTTP {reply.status}"
        if reply.status == 200:
            raise AirflowFailException(
                f"{where}: wrong model accepted: body-based routing missing; apply the body-based router "
                f"and the model-only route (tutorial 5.1) (still so after {self.route_propagation_window:g} s)"
            )
        if reply.status == 404 and reply.is_model_server_error:
            raise AirflowFailException(
                f"{where} from the model server ({reply.preview()}): the request was routed to the pool, "
                "so body-based routing is not in effect; apply the body-based router and the model-only "
                f"route (tutorial 5.1) (still so after {self.route_propagation_window:g} s)"
            )
        if reply.status == 404:
            self.log.info("%s from the gateway, as expected: %s", where, reply.preview())
            return {"status": 404, "reply": reply.preview(), "pod": None}
        if is_transient_status(reply.status):
            raise GatewayNotReadyError(f"{where}: {reply.preview()} (tutorial 5.1)")
        raise AirflowFailException(f"{where}: expected the gateway's 404: {reply.preview()} (tutorial 5.1)")


def _reached_a_model_server(reply: GatewayReply) -> bool:
    """True when a request for a model that must be refused got past the gateway's routing."""
    return reply.status == 200 or (reply.status == 404 and reply.is_model_server_error)
