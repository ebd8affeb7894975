"""The vLLM-compatible model server on its own loopback address, and how a pod's args configure it."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from sandbox.dataplane.engine import Latency
from sandbox.dataplane.metrics import gauge_value, parse_samples
from sandbox.dataplane.modelserver import ModelServer
from sandbox.dataplane.podspec import model_server_spec
from sandbox.dataplane.standalone import MODEL, LoopbackAddresses

FAST = Latency(time_to_first_token=0.005, per_output_token=0.001)


def vllm_pod(args: list[str], image: str = "vllm/vllm-openai:v0.8.5", ports: list | None = None) -> dict:
    container = {"name": "vllm", "image": image, "args": args}
    if ports is not None:
        container["ports"] = ports
    return {"metadata": {"name": "p"}, "spec": {"containers": [container]}}


@pytest.fixture
async def server_for():
    started: list[ModelServer] = []

    async def start(args: list[str], latency: Latency = FAST) -> tuple[ModelServer, str]:
        spec = model_server_spec(vllm_pod(args))
        server = ModelServer(spec, latency, pod_name="vllm-0", namespace="default")
        await server.start(LoopbackAddresses().allocate())
        started.append(server)
        host, port = server.address
        return server, f"http://{host}:{port}"

    yield start
    for server in started:
        await server.stop()


async def test_chat_completion_is_deterministic_and_respects_max_tokens(server_for):
    _, url = await server_for(["--model", MODEL])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there, model"}], "max_tokens": 3}
    async with httpx.AsyncClient() as client:
        first, second = [await client.post(f"{url}/v1/chat/completions", json=body) for _ in range(2)]
    assert first.status_code == 200
    assert first.headers["x-inference-pod"] == "vllm-0"
    assert first.headers["x-inference-namespace"] == "default"
    a, b = first.json(), second.json()
    assert (
        a["choices"][0]["message"]
        == b["choices"][0]["message"]
        == {"role": "assistant", "content": "Hello there,"}
    )
    assert a["choices"][0]["finish_reason"] == "length"
    assert a["usage"]["completion_tokens"] == 3
    assert a["usage"]["total_tokens"] == a["usage"]["prompt_tokens"] + 3


async def test_completions_and_streamed_completions(server_for):
    _, url = await server_for(["--model", MODEL])
    async with httpx.AsyncClient() as client:
        plain = await client.post(
            f"{url}/v1/completions", json={"model": MODEL, "prompt": "One two", "max_tokens": 4}
        )
        streamed = await client.post(
            f"{url}/v1/completions",
            json={"model": MODEL, "prompt": "One two", "max_tokens": 4, "stream": True},
        )
    assert plain.json()["object"] == "text_completion"
    text = plain.json()["choices"][0]["text"]
    assert text == "One two One two"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_models_lists_served_names_and_lora_adapters(server_for):
    _, url = await server_for(
        [
            "--model",
            "/models/llama",
            "--served-model-name",
            MODEL,
            "llama",
            "--lora-modules",
            "food-review-1=/adapters/food",
            '{"name": "sql-lora", "path": "/a"}',
        ]
    )
    async with httpx.AsyncClient() as client:
        models = (await client.get(f"{url}/v1/models")).json()
        adapter = await client.post(f"{url}/v1/completions", json={"model": "sql-lora", "prompt": "x"})
        by_path = await client.post(f"{url}/v1/completions", json={"model": "/models/llama", "prompt": "x"})
    assert [m["id"] for m in models["data"]] == [MODEL, "llama", "food-review-1", "sql-lora"]
    assert adapter.status_code == 200
    assert by_path.status_code == 404  # --served-model-name replaces the --model name


@pytest.mark.parametrize(
    ("body", "status", "error_type", "message"),
    [
        (b"{not json", 400, "BadRequestError", "Invalid JSON"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            400,
            "BadRequestError",
            "max_tokens must be at least 1",
        ),
        ({"model": MODEL, "messages": []}, 400, "BadRequestError", "messages"),
        (
            {"model": "meta-llama/Llama-3.1-10B-Instruct", "messages": [{"role": "user", "content": "x"}]},
            404,
            "NotFoundError",
            "The model `meta-llama/Llama-3.1-10B-Instruct` does not exist.",
        ),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000},
            400,
            "BadRequestError",
            "maximum context length is 4096 tokens",
        ),
    ],
)
async def test_bad_requests_get_vllm_error_objects(server_for, body, status, error_type, message):
    _, url = await server_for(["--model", MODEL, "--max-model-len", "4096"])
    async with httpx.AsyncClient() as client:
        if isinstance(body, bytes):
            response = await client.post(f"{url}/v1/chat/completions", content=body)
        else:
            response = await client.post(f"{url}/v1/chat/completions", json=body)
    error = response.json()
    assert response.status_code == status
    assert (error["object"], error["type"], error["code"], error["param"]) == (
        "error",
        error_type,
        status,
        None,
    )
    assert message in error["message"]


async def test_metrics_report_queue_running_and_kv_cache_while_busy(server_for):
    slow = Latency(time_to_first_token=0.3, per_output_token=0.01)
    server, url = await server_for(
        ["--model", MODEL, "--max-num-seqs", "1", "--num-gpu-blocks-override", "4"], latency=slow
    )
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count the tokens please"}],
        "max_tokens": 2,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        requests = [
            asyncio.create_task(client.post(f"{url}/v1/chat/completions", json=body)) for _ in range(3)
        ]
        await asyncio.sleep(0.15)
        busy = (await client.get(f"{url}/metrics")).text
        responses = await asyncio.gather(*requests)
        idle = (await client.get(f"{url}/metrics")).text
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert gauge_value(busy, "vllm:num_requests_running") == 1
    assert gauge_value(busy, "vllm:num_requests_waiting") == 2
    prompt_tokens = responses[0].json()["usage"]["prompt_tokens"]
    assert gauge_value(busy, "vllm:gpu_cache_usage_perc") == pytest.approx(prompt_tokens / 64)
    assert gauge_value(busy, "vllm:kv_cache_usage_perc") == gauge_value(busy, "vllm:gpu_cache_usage_perc")
    assert gauge_value(idle, "vllm:num_requests_running") == 0
    assert gauge_value(idle, "vllm:gpu_cache_usage_perc") == 0
    samples = {(s.name, s.labels.get("finished_reason")): s.value for s in parse_samples(idle)}
    assert samples[("vllm:request_success_total", "length")] == 3
    assert samples[("vllm:generation_tokens_total", None)] == 6
    assert samples[("vllm:prompt_tokens_total", None)] == 3 * prompt_tokens
    assert samples[("vllm:time_to_first_token_seconds_count", None)] == 3
    assert all(s.labels.get("model_name") == MODEL for s in parse_samples(idle))


async def test_slowdown_multiplies_latency(server_for):
    server, url = await server_for(["--model", MODEL], latency=Latency(0.01, 0.0))
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient() as client:
        await client.post(f"{url}/v1/completions", json=body)  # warm the connection
        started = loop.time()
        await client.post(f"{url}/v1/completions", json=body)
        normal = loop.time() - started
        server.engine.slowdown = 20
        started = loop.time()
        await client.post(f"{url}/v1/completions", json=body)
        slowed = loop.time() - started
    assert slowed >= 0.2
    assert normal < slowed / 2


async def test_health(server_for):
    _, url = await server_for(["--model", MODEL])
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/health")).status_code == 200


def test_pod_spec_port_comes_from_args_then_the_http_container_port():
    assert model_server_spec(vllm_pod(["--model=m", "--port=9000"])).port == 9000
    assert (
        model_server_spec(vllm_pod(["--model", "m"], ports=[{"name": "http", "containerPort": 8081}])).port
        == 8081
    )
    assert model_server_spec(vllm_pod(["--model", "m"])).port == 8000


def test_pod_spec_reads_engine_limits_from_args():
    spec = model_server_spec(
        vllm_pod(
            ["--model", "m", "--max-num-seq", "1024", "--block-size", "32", "--num-gpu-blocks-override", "10"]
        )
    )
    assert (spec.max_num_seqs, spec.kv_cache_tokens) == (1024, 320)
    assert model_server_spec(vllm_pod(["--model", "m"])).max_num_seqs == 256


def test_pods_without_vllm_have_no_model_server():
    bbr = {
        "metadata": {"name": "bbr"},
        "spec": {
            "containers": [
                {
                    "name": "bbr",
                    "image": "registry.k8s.io/gateway-api-inference-extension/bbr:v1.0.0",
                    "args": ["--v", "3"],
                }
            ]
        },
    }
    assert model_server_spec(bbr) is None
    assert model_server_spec(vllm_pod(["vllm", "serve", "Qwen/Qwen2.5-14B-Instruct"])).served_models == (
        "Qwen/Qwen2.5-14B-Instruct",
    )


def test_non_numeric_engine_flags_are_refused():
    with pytest.raises(ValueError, match="--max-num-seqs must be an integer"):
        model_server_spec(vllm_pod(["--model", "m", "--max-num-seqs", "many"]))
