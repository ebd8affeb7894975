"""The vLLM-compatible model server on its own loopback address, and how a pod's args configure it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import openai
import pytest

from sandbox.core.addresses import AddressPool
from sandbox.dataplane.engine import Latency
from sandbox.dataplane.harness import MODEL, eventually
from sandbox.dataplane.metrics import LoraInfo, gauge_value, latest_lora_info, parse_samples
from sandbox.dataplane.modelserver import ModelServer
from sandbox.dataplane.podspec import model_server_spec

FAST = Latency(time_to_first_token=0.005, per_output_token=0.001)


async def metrics_when(client: httpx.AsyncClient, url: str, reached, timeout: float = 5.0) -> str:
    """Poll /metrics until `reached(page)`, bounded: the moment a busy-server assertion needs,
    whatever the machine's load, instead of a fixed sleep that hopes to land in it."""
    deadline = time.monotonic() + timeout
    while True:
        page = (await client.get(f"{url}/metrics")).text
        if reached(page):
            return page
        assert time.monotonic() < deadline, f"/metrics never reached the awaited state; last page:\n{page}"
        await asyncio.sleep(0.005)


def vllm_pod(args: list[str], image: str = "vllm/vllm-openai:v0.8.5", ports: list | None = None) -> dict:
    container = {"name": "vllm", "image": image, "args": args}
    if ports is not None:
        container["ports"] = ports
    return {"metadata": {"name": "p"}, "spec": {"containers": [container]}}


@pytest.fixture
async def server_for():
    started: list[ModelServer] = []
    addresses = AddressPool()

    async def start(args: list[str], latency: Latency = FAST) -> tuple[ModelServer, str]:
        spec = model_server_spec(vllm_pod(args))
        server = ModelServer(spec, latency, pod_name="vllm-0", namespace="default")
        await server.start(addresses.allocate())
        started.append(server)
        host, port = server.address
        return server, f"http://{host}:{port}"

    yield start
    for server in started:
        await server.stop()
    addresses.close()


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
    slow = Latency(time_to_first_token=0.5, per_output_token=0.01)
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
        # All three arrived while the first still waits for its first token (one sequence at a time).
        busy = await metrics_when(
            client, url, lambda page: gauge_value(page, "vllm:num_requests_waiting") == 2
        )
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


def sse_chunks(text: str) -> list[dict]:
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_ignore_eos_generates_exactly_max_tokens_plain_and_streamed(server_for, path):
    """Benchmark clients send ignore_eos: the reply runs to max_tokens, past the echo's natural end."""
    _, url = await server_for(["--model", MODEL])
    prompt = {"messages": [{"role": "user", "content": "Hi"}]} if "chat" in path else {"prompt": "Hi"}
    body = {"model": MODEL, **prompt, "max_tokens": 200, "ignore_eos": True}
    async with httpx.AsyncClient(timeout=10) as client:
        natural = (await client.post(f"{url}{path}", json={**body, "ignore_eos": False})).json()
        plain = (await client.post(f"{url}{path}", json=body)).json()
        streamed = await client.post(
            f"{url}{path}", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert natural["usage"]["completion_tokens"] < 200  # the echo stops by itself without ignore_eos
    assert plain["usage"]["completion_tokens"] == 200
    assert plain["choices"][0]["finish_reason"] == "length"
    chunks = sse_chunks(streamed.text)
    token_chunks = [
        c
        for c in chunks
        if c["choices"] and (c["choices"][0].get("delta", {}).get("content") or c["choices"][0].get("text"))
    ]
    assert len(token_chunks) == 200
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 200


async def test_ignore_eos_without_max_tokens_runs_to_the_end_of_the_context(server_for):
    _, url = await server_for(["--model", MODEL, "--max-model-len", "64"])
    body = {"model": MODEL, "prompt": "one two three four", "ignore_eos": True}
    async with httpx.AsyncClient(timeout=10) as client:
        reply = (await client.post(f"{url}/v1/completions", json=body)).json()
    assert reply["usage"]["total_tokens"] == 64
    assert reply["choices"][0]["finish_reason"] == "length"


async def test_n_returns_n_choices_and_counts_all_of_them(server_for):
    server, url = await server_for(["--model", MODEL])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 4}
    async with httpx.AsyncClient(timeout=10) as client:
        one = (await client.post(f"{url}/v1/chat/completions", json=body)).json()
        two = (await client.post(f"{url}/v1/chat/completions", json={**body, "n": 2})).json()
        three = (
            await client.post(
                f"{url}/v1/completions", json={"model": MODEL, "prompt": "x y", "n": 3, "max_tokens": 4}
            )
        ).json()
        metrics = (await client.get(f"{url}/metrics")).text
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert all(c["message"]["content"] == one["choices"][0]["message"]["content"] for c in two["choices"])
    assert two["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    assert two["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert three["usage"]["completion_tokens"] == 3 * 4
    # The V1 engine runs each choice as its own child request (1 + 2 + 3 finished sequences).
    samples = {(s.name, s.labels.get("finished_reason")): s.value for s in parse_samples(metrics)}
    assert samples[("vllm:request_success_total", "length")] == 6


@pytest.mark.parametrize("chat", [True, False])
async def test_streamed_n_tags_each_chunk_with_its_choice(server_for, chat):
    _, url = await server_for(["--model", MODEL])
    path, prompt = (
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a b c"}]})
        if chat
        else ("/v1/completions", {"prompt": "a b c"})
    )
    body = {
        "model": MODEL,
        **prompt,
        "max_tokens": 5,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        chunks = sse_chunks((await client.post(f"{url}{path}", json=body)).text)
    by_index: dict[int, list[dict]] = {0: [], 1: []}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        by_index[choice["index"]].append(choice)
    for choices in by_index.values():
        text = "".join((c["delta"].get("content") or "") if chat else c["text"] for c in choices)
        assert text == "a b c a b"
        assert [c["finish_reason"] for c in choices][-1] == "length"
        assert all(c["finish_reason"] is None for c in choices[:-1])
        # vLLM puts the finish_reason on the last token's chunk, not on an empty chunk of its own.
        assert (choices[-1]["delta"].get("content") if chat else choices[-1]["text"]) == " b"
        if chat:
            assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 10


async def test_openai_client_gets_n_choices_and_ignore_eos(server_for):
    _, url = await server_for(["--model", MODEL])
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            n=2,
            max_tokens=50,
            extra_body={"ignore_eos": True},
        )
        stream = await client.completions.create(
            model=MODEL,
            prompt="Hi",
            n=2,
            max_tokens=30,
            stream=True,
            extra_body={"ignore_eos": True},
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage.completion_tokens == 100
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}
    assert chunks[-1].usage.completion_tokens == 60


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 0}, "n must be at least 1, got 0."),
        ({"n": -1}, "n must be at least 1, got -1."),
        ({"n": 2, "temperature": 0}, "n must be 1 when using greedy sampling, got 2."),
        ({"n": 3, "best_of": 2}, "best_of must be greater than or equal to n, got n=3 and best_of=2."),
        ({"n": 1, "best_of": 2, "stream": True}, "best_of must equal n to use output_kind=DELTA"),
        ({"best_of": 2}, "vLLM V1 does not yet support best_of."),
        ({"n": "many"}, "n must be an integer"),
    ],
)
async def test_sampling_counts_vllm_refuses(server_for, extra, message):
    _, url = await server_for(["--model", MODEL])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], **extra}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == message


async def test_streamed_best_of_is_refused_by_the_engine_after_the_200(server_for):
    """The V1 engine's refusal comes once the stream has begun: an error event, then [DONE]."""
    _, url = await server_for(["--model", MODEL])
    body = {"model": MODEL, "prompt": "x", "n": 2, "best_of": 2, "stream": True}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/v1/completions", json=body)
    assert response.status_code == 200
    assert sse_chunks(response.text) == [
        {
            "error": {
                "object": "error",
                "message": "vLLM V1 does not yet support best_of.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        }
    ]


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_disconnects_is_aborted_at_info_without_a_traceback(server_for, caplog, stream):
    slow = Latency(time_to_first_token=0.01, per_output_token=0.02)
    server, url = await server_for(["--model", MODEL], latency=slow)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "tell me"}],
        "max_tokens": 1000,
        "ignore_eos": True,  # 20 s of tokens: only an abort ends it within the wait below
        "stream": stream,
    }
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(timeout=10) as client:
        if stream:
            async with client.stream(
                "POST", f"{url}/v1/chat/completions", json=body, headers={"X-Request-Id": "gone"}
            ) as response:
                async for line in response.aiter_lines():
                    if '"content": "tell"' in line:
                        break  # leave mid-stream: the connection closes
        else:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    f"{url}/v1/chat/completions", json=body, headers={"X-Request-Id": "gone"}, timeout=0.3
                )
        await eventually(lambda: "Request chatcmpl-gone aborted." in caplog.messages)
        assert server.engine.running == 0 and server.engine.tokens_in_flight == 0
        again = await client.post(
            f"{url}/v1/chat/completions", json={**body, "max_tokens": 2, "stream": False}
        )
    assert again.status_code == 200
    abort_lines = [r for r in caplog.records if "chatcmpl-gone" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in abort_lines] == [
        (logging.INFO, "Aborted request chatcmpl-gone."),
        (logging.INFO, "Request chatcmpl-gone aborted."),
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    samples = {
        (s.name, s.labels.get("finished_reason")): s.value for s in parse_samples(server.engine.exposition())
    }
    assert samples[("vllm:request_success_total", "length")] == 1  # the aborted request is no success


LORA_ARGS = [
    "--model",
    MODEL,
    "--enable-lora",
    "--max-loras",
    "2",
    "--max-num-seqs",
    "1",
    "--lora-modules",
    "food-review-1=/adapters/food",
    "sql-lora=/adapters/sql",
]


def lora_series(page: str) -> list:
    return [s for s in parse_samples(page) if s.name == "vllm:lora_requests_info"]


async def test_lora_requests_info_follows_running_and_waiting_adapters(server_for):
    slow = Latency(time_to_first_token=0.05, per_output_token=0.2)
    _, url = await server_for(LORA_ARGS, latency=slow)
    async with httpx.AsyncClient(timeout=10) as client:
        before = (await client.get(f"{url}/metrics")).text
        started = time.time()
        requests = [
            asyncio.create_task(
                client.post(f"{url}/v1/completions", json={"model": name, "prompt": "x", "max_tokens": 3})
            )
            for name in ("food-review-1", "sql-lora")
        ]
        # food-review-1 runs (its steps at 0.05, 0.25 and 0.45 s) while sql-lora waits: the page
        # once a step has seen both.
        busy = await metrics_when(
            client, url, lambda page: any(s.labels["waiting_lora_adapters"] for s in lora_series(page))
        )
        await asyncio.gather(*requests)
        idle = (await client.get(f"{url}/metrics")).text
    # The gauge exists from the start, but vLLM sets a series only at an engine step.
    assert "# TYPE vllm:lora_requests_info gauge" in before
    assert lora_series(before) == []
    assert all(s.labels["max_lora"] == "2" for s in lora_series(idle))
    assert list(lora_series(idle)[0].labels) == ["max_lora", "waiting_lora_adapters", "running_lora_adapters"]
    newest = max(lora_series(busy), key=lambda s: s.value)
    assert (newest.labels["running_lora_adapters"], newest.labels["waiting_lora_adapters"]) == (
        "food-review-1",
        "sql-lora",
    )
    assert started <= newest.value <= time.time()  # the value is the time of the step
    series = {
        (s.labels["running_lora_adapters"], s.labels["waiting_lora_adapters"]): s.value
        for s in lora_series(idle)
    }
    assert ("sql-lora", "") in series  # one series per combination, each keeping its own time
    assert max(series, key=series.get) == ("", "")  # the last step saw no adapter left
    # The EPP reads the newest series naming an adapter, skipping the empty ones.
    assert latest_lora_info(idle) == LoraInfo(running=("sql-lora",), waiting=(), max_loras=2)


async def test_without_enable_lora_there_is_no_lora_gauge(server_for):
    _, url = await server_for(["--model", MODEL])
    async with httpx.AsyncClient() as client:
        await client.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
        page = (await client.get(f"{url}/metrics")).text
    assert "vllm:lora_requests_info" not in page


async def test_disable_log_requests_silences_the_abort_lines(server_for, caplog):
    server, url = await server_for(["--model", MODEL, "--disable-log-requests"], latency=Latency(0.01, 0.02))
    caplog.set_level(logging.INFO)
    body = {"model": MODEL, "prompt": "x", "max_tokens": 100, "stream": True}
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    break
        # Positive markers that the abort has been handled: the engine let the request go, and a
        # later request went through the same server after it.
        await eventually(lambda: server.engine.running == 0 and server.engine.tokens_in_flight == 0)
        again = await client.post(f"{url}/v1/completions", json={**body, "max_tokens": 1, "stream": False})
    assert again.status_code == 200
    assert not [m for m in caplog.messages if "bort" in m]


async def test_the_role_chunk_arrives_with_the_first_token(server_for):
    """vLLM sends the role chunks on its first engine output, so a client timing the first chunk measures
    the time to the first token."""
    _, url = await server_for(
        ["--model", MODEL], latency=Latency(time_to_first_token=0.3, per_output_token=0.001)
    )
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a"}], "max_tokens": 2, "stream": True}
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=10) as client:
        started = loop.time()
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    first_chunk = json.loads(line.removeprefix("data: "))
                    break
        waited = loop.time() - started
    assert first_chunk["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert waited >= 0.3


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (
            b'{"model": "m", "prompt": "x"}',
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
        ),  # curl -d
        (b'{"model": "m", "prompt": "x"}', {}, 415),
        (b"", {}, 415),
        (b"{not json", {}, 400),  # FastAPI's JSON decoding of an untyped body comes first
        (b"{not json", {"Content-Type": "text/plain"}, 415),
        (b'{"model": "m", "prompt": "x"}', {"Content-Type": "Application/JSON; charset=utf-8"}, 200),
    ],
)
async def test_completion_routes_take_only_json(server_for, content, headers, status):
    _, url = await server_for(["--model", "m"])
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/v1/completions", content=content, headers=headers)
    assert response.status_code == status
    if status == 415:
        assert response.json() == {"detail": "Unsupported Media Type: Only 'application/json' is allowed"}
