"""The gateway chain end to end on loopback: official clients -> gateway listener -> route -> picker ->
vLLM-compatible pod server, with the tutorial's objects in the store."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from sandbox.dataplane.standalone import MODEL, NAMESPACE, POOL, WRONG_MODEL, eventually

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


async def test_body_routing_refuses_a_body_that_is_not_json(lab):
    base_url = await lab.tutorial_setup()
    lab.add_body_based_router()
    response = await post_chat(base_url, b"{not json")
    assert response.status_code == 400


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
