"""The gateway chain end to end on loopback: official clients -> gateway listener -> route -> picker ->
vLLM-compatible pod server, with the tutorial's objects in the store."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import httpx
import openai
import pytest

from sandbox.dataplane.harness import MODEL, NAMESPACE, POOL, WRONG_MODEL, eventually
from sandbox.dataplane.metrics import LoraInfo

TUTORIAL_4_2 = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "GKE Inference Gatewayについて一言で"}],
    "max_tokens": 100,
}
TUTORIAL_5_1_RIGHT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
TUTORIAL_5_1_WRONG = {"model": WRONG_MODEL, "messages": [{"role": "user", "content": "Hello"}]}


def openai_client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=10)


async def post_chat(base_url: str, body: dict | bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        if isinstance(body, bytes):
            return await client.post(
                f"{base_url}/v1/chat/completions",
                content=body,
                headers={"Content-Type": "application/json", **headers},
            )
        return await client.post(f"{base_url}/v1/chat/completions", json=body, headers=headers)


async def test_openai_client_gets_a_chat_completion_through_the_gateway(lab):
    base_url = await lab.tutorial_setup()
    async with openai_client(base_url) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=5
        )
    assert completion.model == MODEL
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens <= 5


async def test_openai_client_streams_a_chat_completion_through_the_gateway(lab):
    base_url = await lab.tutorial_setup()
    async with openai_client(base_url) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Stream a few words"}],
            stream=True,
            max_tokens=6,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Stream a few words")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6


async def test_streaming_passes_through_unbuffered(lab):
    """Chunks reach the client as the pod writes them, not when the pod has finished."""
    base_url = await lab.tutorial_setup()
    ((_, pod),) = lab.dataplane.model_servers
    lab.dataplane.set_pod_slowdown(pod, 20)  # 0.4 s to the first token, 40 ms per token after
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three"}],
        "max_tokens": 10,
        "stream": True,
    }
    loop = asyncio.get_running_loop()
    arrivals = []
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    arrivals.append(loop.time())
    assert len(arrivals) >= 10
    # Tokens arrive spread over roughly 10 x 40 ms; a buffering proxy would deliver them all at once.
    assert arrivals[-1] - arrivals[1] > 0.2


async def test_tutorial_4_2_curl_returns_200_with_the_endpoint_header(lab):
    base_url = await lab.tutorial_setup()
    response = await post_chat(base_url, TUTORIAL_4_2)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("GKE Inference Gateway")
    (pod,) = [name for _, name in lab.dataplane.model_servers]
    assert response.headers["x-gateway-destination-endpoint"] == f"{lab.pod_ip(pod)}:8000"
    assert response.headers["x-inference-pod"] == pod


async def test_before_body_routing_a_wrong_model_reaches_vllm_and_gets_its_404(lab):
    base_url = await lab.tutorial_setup()
    async with openai_client(base_url) as client:
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(
                model=WRONG_MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
    assert raised.value.response.json() == {
        "object": "error",
        "message": f"The model `{WRONG_MODEL}` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    assert "x-inference-pod" in raised.value.response.headers


async def test_with_body_routing_the_gateway_rejects_a_wrong_model_and_serves_the_right_one(lab):
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    lab.put_body_routing_route()

    right = await post_chat(base_url, TUTORIAL_5_1_RIGHT)
    wrong = await post_chat(base_url, TUTORIAL_5_1_WRONG)
    assert right.status_code == 200
    assert wrong.status_code == 404
    assert "x-inference-pod" not in wrong.headers  # the gateway answered, no pod saw it
    with pytest.raises(json.JSONDecodeError):
        json.loads(wrong.text)

    async with openai_client(base_url) as client:
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(
                model=WRONG_MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
        assert "x-inference-pod" not in raised.value.response.headers
        ok = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert ok.choices[0].message.content


async def test_body_routing_route_without_a_running_router_matches_nothing(lab):
    """The header the route matches on only exists while the body-based router runs."""
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router(available=False)
    lab.put_body_routing_route()
    assert (await post_chat(base_url, TUTORIAL_5_1_RIGHT)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"model": 5, "messages": [{"role": "user", "content": "Hi"}]}',
        b'{"model": {"name": "x"}, "messages": []}',
        b'{"model": "' + MODEL.encode() + b'", "model": ["late"]}',
        b'[{"model": "' + MODEL.encode() + b'"}]',
        b'"just a string"',
        b"42",
        b'{"model": "' + MODEL.encode() + b'", "temperature": NaN}',
    ],
)
async def test_body_routing_answers_500_for_a_body_the_router_cannot_parse(lab, body):
    """Go's json.Unmarshal refuses these, the router's error ends its ext_proc stream, and with failOpen
    false the load balancer answers 500 before any route, picker or pod sees the request."""
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    before = [server.engine.request_success for server in lab.dataplane.model_servers.values()]
    response = await post_chat(base_url, body)
    assert (response.status_code, response.text) == (500, "")
    assert "x-inference-pod" not in response.headers
    assert [server.engine.request_success for server in lab.dataplane.model_servers.values()] == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # No model, or a null one: the router passes the body on without the header.
        (b'{"messages": [{"role": "user", "content": "Hi"}]}', 404),
        (b'{"model": null, "messages": [{"role": "user", "content": "Hi"}]}', 404),
        (b"null", 404),
        # Go matches the field name case-insensitively, and the last duplicate wins. The header routes
        # "MODEL" to the pool, where the EPP, reading the key "model" exactly, refuses it.
        (b'{"MODEL": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "Hi"}]}', 400),
        (
            b'{"model": "x", "model": "'
            + MODEL.encode()
            + b'", "messages": [{"role": "user", "content": "Hi"}]}',
            200,
        ),
    ],
)
async def test_body_routing_passes_bodies_go_can_unmarshal(lab, body, status):
    """With the route matching the header only (tutorial 5.1), what the router sets decides the outcome."""
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    lab.put_body_routing_route()
    response = await post_chat(base_url, body)
    # 404: without X-Gateway-Model-Name the header route matches nothing; 200 and 400: it was set.
    assert response.status_code == status


async def test_body_routing_with_fail_open_lets_an_unparsable_body_through(lab):
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    extension = lab.store.get("networking.gke.io/v1", "GCPRoutingExtension", NAMESPACE, "body-based-router")
    extension["spec"]["extensionChains"][0]["extensions"][0]["failOpen"] = True
    lab.store.replace(extension)
    response = await post_chat(base_url, b"{not json")
    assert response.status_code == 400  # past the router: the endpoint picker refuses it
    assert "not valid JSON" in response.text


async def test_a_request_without_a_body_is_not_body_routed(lab):
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base_url}/v1/models")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("GET", "/health"), ("POST", "/v1/chat/completions")]
)
async def test_a_request_without_a_body_goes_to_a_random_pod(lab, method, path):
    """The EPP sends a headers-only request to a pod picked at random, so vLLM itself answers it."""
    base_url = await lab.tutorial_setup(replicas=2)
    pods = {name for _, name in lab.dataplane.model_servers}
    async with httpx.AsyncClient(timeout=10) as client:
        responses = [await client.request(method, f"{base_url}{path}") for _ in range(30)]
    served = {response.headers["x-inference-pod"] for response in responses}
    assert served == pods  # both pods, by chance: 30 fair coin flips all alike has odds 2 in a billion
    if path == "/v1/models":
        assert {m["id"] for m in responses[0].json()["data"]} == {MODEL}
        assert {r.status_code for r in responses} == {200}
    elif path == "/health":
        assert {r.status_code for r in responses} == {200}
    else:
        # vLLM's answer to an untyped empty body, from its validate_json_request dependency
        assert {r.status_code for r in responses} == {415}
        assert responses[0].json() == {"detail": "Unsupported Media Type: Only 'application/json' is allowed"}
    assert all(r.headers["x-went-into-resp-headers"] == "true" for r in responses)


async def test_a_request_without_a_body_and_no_ready_pod_gets_the_epp_500(lab):
    base_url = await lab.tutorial_setup()
    for _, pod in list(lab.dataplane.model_servers):
        lab.set_ready(pod, False)
    await eventually(lambda: not lab.dataplane.model_servers)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base_url}/v1/models")
    assert (response.status_code, response.text) == (
        500,
        "inference gateway: Internal - no pods available in datastore",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode(), "model not found"),
        (json.dumps({"model": MODEL}).encode(), "prompt or messages"),
    ],
)
async def test_endpoint_picker_refuses_bodies_it_cannot_schedule(lab, body, reason):
    base_url = await lab.tutorial_setup()
    response = await post_chat(base_url, body)
    assert response.status_code == 400
    assert reason in response.text


async def test_no_ready_pods_gives_503(lab):
    base_url = await lab.tutorial_setup()
    for _, pod in list(lab.dataplane.model_servers):
        lab.set_ready(pod, False)
    await eventually(lambda: not lab.dataplane.model_servers)
    response = await post_chat(base_url, TUTORIAL_4_2)
    assert (response.status_code, response.text) == (503, "no healthy upstream")


async def test_deleting_the_pool_gives_500(lab):
    base_url = await lab.tutorial_setup()
    lab.store.delete("inference.networking.k8s.io/v1", "InferencePool", NAMESPACE, POOL)
    response = await post_chat(base_url, TUTORIAL_4_2)
    assert (response.status_code, response.text) == (500, "fault filter abort")


async def test_deleting_the_route_gives_404(lab):
    base_url = await lab.tutorial_setup()
    assert (await post_chat(base_url, TUTORIAL_4_2)).status_code == 200
    lab.store.delete("gateway.networking.k8s.io/v1", "HTTPRoute", NAMESPACE, "llm-route")
    assert (await post_chat(base_url, TUTORIAL_4_2)).status_code == 404


async def test_backend_policy_timeout_gives_504(lab):
    base_url = await lab.tutorial_setup()
    lab.add_backend_policy(timeout_sec=1)
    ((_, pod),) = lab.dataplane.model_servers
    lab.dataplane.set_pod_slowdown(pod, 100)  # 2 s to the first token
    response = await post_chat(base_url, {**TUTORIAL_4_2, "max_tokens": 1})
    assert (response.status_code, response.text) == (504, "upstream request timeout")


async def test_oversized_body_gives_413(lab):
    base_url = await lab.tutorial_setup()
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 1)}]}
    assert (await post_chat(base_url, big)).status_code == 413


async def test_service_backend_is_balanced_round_robin_over_ready_pods(lab):
    pods = await lab.add_model_pods(2)
    lab.store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "vllm", "namespace": NAMESPACE},
            "spec": {
                "selector": {"app": "vllm-llama3-1-8b-instruct"},
                "ports": [{"port": 80, "targetPort": "http"}],
            },
        }
    )
    lab.put_route(
        "svc-route",
        [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                "backendRefs": [{"kind": "Service", "name": "vllm", "port": 80}],
            }
        ],
    )
    base_url = await lab.add_gateway(port=8080)
    served = [(await post_chat(base_url, TUTORIAL_5_1_RIGHT)).headers["x-inference-pod"] for _ in range(4)]
    assert sorted(served) == sorted(pods * 2)


async def test_gateway_stops_serving_when_no_longer_programmed(lab):
    base_url = await lab.tutorial_setup()
    lab.store.delete("gateway.networking.k8s.io/v1", "Gateway", NAMESPACE, "inference-gateway")
    await eventually(lambda: not lab.dataplane.gateways)
    with pytest.raises(httpx.ConnectError):
        await post_chat(base_url, TUTORIAL_4_2)


async def test_openai_client_benchmark_settings_through_the_gateway(lab):
    """What benchmark clients send (ignore_eos, n, streamed usage) reaches vLLM unchanged."""
    base_url = await lab.tutorial_setup()
    async with openai_client(base_url) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            n=2,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = [chunk async for chunk in stream]
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert sorted(Counter(c.choices[0].index for c in content).items()) == [(0, 64), (1, 64)]
    assert chunks[-1].usage.completion_tokens == 128


async def test_the_picker_reads_lora_requests_info_from_the_pods(lab):
    args = lab.vllm_args(
        ("--enable-lora", "--max-loras", "2", "--lora-modules", "food-review-1=/adapters/food")
    )
    base_url = await lab.tutorial_setup(args=args)
    body = {"model": "food-review-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    assert (await post_chat(base_url, body)).status_code == 200
    ((_, pod),) = lab.dataplane.model_servers
    (gateway,) = lab.dataplane.gateways.values()
    address = f"{lab.pod_ip(pod)}:8000"
    await eventually(lambda: gateway.picker.metrics[address].lora is not None)
    assert gateway.picker.metrics[address].lora == LoraInfo(
        running=("food-review-1",), waiting=(), max_loras=2
    )


async def test_a_client_leaving_mid_stream_through_the_gateway_aborts_the_request_on_the_pod(lab, caplog):
    base_url = await lab.tutorial_setup()
    ((_, pod),) = lab.dataplane.model_servers
    lab.dataplane.set_pod_slowdown(pod, 10)  # 20 ms per token: 1000 tokens would take 20 s
    server = next(iter(lab.dataplane.model_servers.values()))
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "go on"}],
        "max_tokens": 1000,
        "ignore_eos": True,
        "stream": True,
    }
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream(
            "POST", f"{base_url}/v1/chat/completions", json=body, headers={"X-Request-Id": "left"}
        ) as response:
            async for line in response.aiter_lines():
                if '"content": "go"' in line:
                    break
    await eventually(lambda: "Request chatcmpl-left aborted." in caplog.messages)
    assert server.engine.running == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert (await post_chat(base_url, TUTORIAL_5_1_RIGHT)).status_code == 200
