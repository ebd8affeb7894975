"""A vLLM-compatible OpenAI server for one Ready pod: the subset the tutorial and the gateway use."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from sandbox.dataplane import textgen
from sandbox.dataplane.engine import Engine, Latency
from sandbox.dataplane.podspec import ModelServerSpec

log = logging.getLogger(__name__)

_SAMPLING_EPS = 1e-5  # vllm/sampling_params.py: below this temperature sampling is greedy
# The V1 engine (VLLM_USE_V1=1, the tutorial's setting and v0.8.5's default) refuses best_of > 1 when
# it adds the request (vllm/v1/engine/processor.py, Processor._validate_supported_sampling_params).
V1_BEST_OF_ERROR = "vLLM V1 does not yet support best_of."


class RequestError(Exception):
    """A request vLLM refuses, carried to the handler as the vLLM error object."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict:
        return {
            "object": "error",
            "message": self.message,
            "type": self.error_type,
            "param": None,
            "code": self.status,
        }

    def response(self) -> web.Response:
        return _json_response(self.body(), status=self.status)


class UnsupportedMediaType(RequestError):
    def __init__(self) -> None:
        super().__init__(415, "Unsupported Media Type: Only 'application/json' is allowed", "")

    def body(self) -> dict:
        return {"detail": self.message}


def _bad_request(message: str) -> RequestError:
    return RequestError(400, message, "BadRequestError")


@dataclass(frozen=True)
class Generation:
    """What one request asks for, validated."""

    model: str
    prompt_text: str  # what prefill reads (for token counts)
    seed_text: str  # what the reply echoes
    max_tokens: int | None
    stream: bool
    include_usage: bool
    n: int = 1
    ignore_eos: bool = False
    best_of: int | None = None


class ModelServer:
    def __init__(
        self,
        spec: ModelServerSpec,
        latency: Latency,
        pod_name: str,
        namespace: str,
        middlewares: Iterable = (),
    ) -> None:
        self.spec = spec
        self.pod_name = pod_name
        self.namespace = namespace
        self.engine = Engine(spec, latency)
        self._middlewares = tuple(middlewares)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(middlewares=self._middlewares)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(self._add_pod_headers)
        return app

    async def start(self, host: str, port: int | None = None) -> None:
        # A client that disconnects cancels its handler, as vLLM's @with_cancellation does
        # (vllm/entrypoints/utils.py, v0.8.5), so the request is aborted instead of generated for no one.
        self._runner = web.AppRunner(
            self.application(), shutdown_timeout=0.2, access_log=None, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, self.spec.port if port is None else port)
        await site.start()
        bound = self._runner.addresses[0]
        self.address = (bound[0], bound[1])
        log.info(
            "model server for pod %s/%s listening on %s:%s", self.namespace, self.pod_name, *self.address
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _add_pod_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-inference-pod"] = self.pod_name
        response.headers["x-inference-namespace"] = self.namespace

    # -- handlers ------------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.engine.exposition(), content_type="text/plain", charset="utf-8")

    async def _models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        base = self.spec.served_models[0]
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": base,
                "parent": None if index == 0 else base,
                "max_model_len": self.spec.max_model_len,
            }
            for index, name in enumerate(self.spec.served_models)
        ]
        return _json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            messages = body.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) for m in messages)
            ):
                raise _bad_request("'messages' must be a non-empty list of message objects")
            generation = self._generation(
                body,
                textgen.chat_prompt_text(messages),
                textgen.last_user_text(messages),
                body.get("max_completion_tokens", body.get("max_tokens")),
            )
        except RequestError as error:
            return error.response()
        return await self._serve(request, generation, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise _bad_request("'prompt' must be a string")
            generation = self._generation(body, prompt, prompt, body.get("max_tokens"))
        except RequestError as error:
            return error.response()
        return await self._serve(request, generation, chat=False)

    def _generation(self, body: dict, prompt_text: str, seed_text: str, max_tokens: object) -> Generation:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _bad_request("'model' is required")
        if model not in self.spec.served_models:
            raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")
        if max_tokens is not None and not _is_int(max_tokens):
            raise _bad_request("max_tokens must be an integer")
        if max_tokens is not None and max_tokens <= 0:
            raise _bad_request(f"max_tokens must be at least 1, got {max_tokens}.")
        prompt_tokens = textgen.count_tokens(prompt_text)
        requested = prompt_tokens + (max_tokens or 0)
        if requested > self.spec.max_model_len:
            raise _bad_request(
                f"This model's maximum context length is {self.spec.max_model_len} tokens. However, you "
                f"requested {requested} tokens ({prompt_tokens} in the messages, {max_tokens or 0} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        stream = bool(body.get("stream"))
        n, best_of = _sampling_counts(body, stream)
        ignore_eos = body.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise _bad_request("ignore_eos must be a boolean")
        stream_options = body.get("stream_options") or {}
        return Generation(
            model=model,
            prompt_text=prompt_text,
            seed_text=seed_text,
            max_tokens=max_tokens,
            stream=stream,
            include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
            n=n,
            ignore_eos=ignore_eos,
            best_of=best_of,
        )

    # -- generation ----------------------------------------------------------------------------------

    async def _serve(self, request: web.Request, generation: Generation, chat: bool) -> web.StreamResponse:
        shape = _ResponseShape(chat=chat, model=generation.model, request_id=_request_id(request, chat))
        if generation.best_of is not None and generation.best_of > 1:
            return await self._refuse_in_engine(request, generation, shape)
        prompt_tokens = textgen.count_tokens(generation.prompt_text)
        # Without max_tokens vLLM may generate up to the end of the context window
        # (serving_chat.py / serving_completion.py: default_max_tokens = max_model_len - prompt length).
        limit = generation.max_tokens or self.spec.max_model_len - prompt_tokens
        pieces, finish_reason = textgen.reply_tokens(generation.seed_text, limit, generation.ignore_eos)
        adapter = generation.model if generation.model in self.spec.lora_adapters else None
        reply = _Reply(pieces, finish_reason, prompt_tokens, generation.n, adapter)
        if generation.stream:
            return await self._stream(request, generation, shape, reply)
        try:
            await asyncio.gather(*(self._generate(reply) for _ in range(generation.n)))
        except asyncio.CancelledError:
            self._log_abort(shape.engine_request_id)
            raise
        return _json_response(shape.full(reply))

    async def _generate(
        self, reply: _Reply, on_token: Callable[[str, str | None], None] | None = None
    ) -> None:
        """One output sequence: with n > 1 the V1 engine fans a request out into n child requests, each
        with its own place in the batch and its own KV cache (vllm/v1/engine/async_llm.py, add_request)."""
        async with self.engine.sequence(reply.prompt_tokens, reply.adapter) as sequence:
            for position, piece in enumerate(reply.pieces):
                await sequence.next_token()
                if on_token is not None:
                    last = position == len(reply.pieces) - 1
                    on_token(piece, reply.finish_reason if last else None)
        if on_token is not None and not reply.pieces:
            on_token("", reply.finish_reason)
        self.engine.record_success(reply.finish_reason, reply.prompt_tokens, len(reply.pieces))

    async def _stream(
        self, request: web.Request, generation: Generation, shape: _ResponseShape, reply: _Reply
    ) -> web.StreamResponse:
        response = _event_stream()
        await response.prepare(request)
        events: asyncio.Queue[tuple[int, str, str | None]] = asyncio.Queue()
        producers = [
            asyncio.create_task(
                self._generate(reply, lambda piece, finish, i=index: events.put_nowait((i, piece, finish)))
            )
            for index in range(generation.n)
        ]
        try:
            await self._write_events(response, shape, reply, events)
            if generation.include_usage:
                await _send_event(response, shape.usage_chunk(reply))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away mid-stream: vLLM aborts the request and says so at INFO, no traceback.
            for producer in producers:
                producer.cancel()
            await asyncio.gather(*producers, return_exceptions=True)
            self._log_abort(shape.engine_request_id)
            if asyncio.current_task().cancelling():
                raise
        return response

    @staticmethod
    async def _write_events(
        response: web.StreamResponse,
        shape: _ResponseShape,
        reply: _Reply,
        events: asyncio.Queue[tuple[int, str, str | None]],
    ) -> None:
        """Write each choice's tokens as they come, tagged with the choice's index. As in vLLM's
        serving_chat.py (chat_completion_stream_generator), the role chunks of all choices go out with
        the first token, and each choice's finish_reason rides on its last token's chunk."""
        finished = 0
        first = True
        while finished < reply.choices:
            index, piece, finish_reason = await events.get()
            if first and shape.chat:
                for choice in range(reply.choices):
                    await _send_event(
                        response, shape.chunk({"role": "assistant", "content": ""}, None, choice)
                    )
            first = False
            await _send_event(response, shape.chunk(piece, finish_reason, index))
            finished += finish_reason is not None

    async def _refuse_in_engine(
        self, request: web.Request, generation: Generation, shape: _ResponseShape
    ) -> web.StreamResponse:
        """The V1 engine refuses best_of only once the request reaches it: a plain request gets a 400;
        a streamed one has its 200 sent already and gets the error as an event
        (serving_chat.py: create_streaming_error_response, then [DONE])."""
        error = _bad_request(V1_BEST_OF_ERROR)
        if not generation.stream:
            return error.response()
        response = _event_stream()
        await response.prepare(request)
        await _send_event(response, {"error": error.body()})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _log_abort(self, engine_request_id: str) -> None:
        # vllm/v1/engine/async_llm.py (v0.8.5): AsyncLLM.abort logs the first line, generate() the second,
        # both only while requests are logged (no --disable-log-requests).
        if self.spec.log_requests:
            log.info("Aborted request %s.", engine_request_id)
            log.info("Request %s aborted.", engine_request_id)


@dataclass(frozen=True)
class _Reply:
    """The tokens each choice generates (all choices alike), and the counts the usage reports."""

    pieces: list[str]
    finish_reason: str
    prompt_tokens: int
    choices: int
    adapter: str | None  # the LoRA adapter the request names, if any

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        # vLLM sums the tokens of every choice (serving_chat.py: num_generated_tokens over outputs).
        return len(self.pieces) * self.choices


def _request_id(request: web.Request, chat: bool) -> str:
    """vLLM's request id: the X-Request-Id header when given, else a random uuid
    (serving_engine.py, _base_request_id)."""
    if chat:
        return "chatcmpl-" + request.headers.get("X-Request-Id", uuid.uuid4().hex)
    return "cmpl-" + request.headers.get("X-Request-Id", uuid.uuid4().hex)


class _ResponseShape:
    """OpenAI response objects for chat or text completions, sharing one id and creation time."""

    def __init__(self, chat: bool, model: str, request_id: str) -> None:
        self.chat = chat
        self.model = model
        self.id = request_id
        self.created = int(time.time())

    @property
    def engine_request_id(self) -> str:
        # Completions send each prompt to the engine as "<id>-<prompt index>" (serving_completion.py).
        return self.id if self.chat else f"{self.id}-0"

    def _envelope(self, object_name: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def _usage(reply: _Reply) -> dict:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }

    def full(self, reply: _Reply) -> dict:
        if self.chat:
            choices = [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": reply.text},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
                for index in range(reply.choices)
            ]
            body = self._envelope("chat.completion", choices)
        else:
            choices = [
                {"index": index, "text": reply.text, "logprobs": None, "finish_reason": reply.finish_reason}
                for index in range(reply.choices)
            ]
            body = self._envelope("text_completion", choices)
        body["usage"] = self._usage(reply)
        return body

    def chunk(self, delta: str | dict, finish_reason: str | None, index: int = 0) -> dict:
        if self.chat:
            content = delta if isinstance(delta, dict) else {"content": delta}
            choice = {"index": index, "delta": content, "logprobs": None, "finish_reason": finish_reason}
            return self._envelope("chat.completion.chunk", [choice])
        choice = {"index": index, "text": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("text_completion", [choice])

    def usage_chunk(self, reply: _Reply) -> dict:
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = self._usage(reply)
        return body


def _event_stream() -> web.StreamResponse:
    return web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_number(body: dict, name: str, kind: type | tuple[type, ...]) -> object:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise _bad_request(f"{name} must be a number" if kind is not int else f"{name} must be an integer")
    return value


def _sampling_counts(body: dict, stream: bool) -> tuple[int, int | None]:
    """n and best_of, refused as vLLM 0.8.5's SamplingParams refuses them, in its order
    (vllm/sampling_params.py: __post_init__, _verify_args, _verify_greedy_sampling)."""
    n = _optional_number(body, "n", int)
    n = 1 if n is None else n  # SamplingParams.from_optional: n=None means 1
    best_of = _optional_number(body, "best_of", int)
    temperature = _optional_number(body, "temperature", (int, float))
    temperature = 1.0 if temperature is None else temperature  # ChatCompletionRequest default
    real_n, sequences = None, n
    if best_of:
        if best_of < n:
            raise _bad_request(
                f"best_of must be greater than or equal to n, got n={n} and best_of={best_of}."
            )
        real_n, sequences = n, best_of
    if sequences < 1:
        raise _bad_request(f"n must be at least 1, got {sequences}.")
    if temperature < 0:
        raise _bad_request(f"temperature must be non-negative, got {temperature}.")
    if best_of != real_n and stream:  # streamed requests use RequestOutputKind.DELTA
        raise _bad_request("best_of must equal n to use output_kind=DELTA")
    if temperature < _SAMPLING_EPS and sequences > 1:
        raise _bad_request(f"n must be 1 when using greedy sampling, got {sequences}.")
    return n, best_of


def _json_response(body: dict, status: int = 200) -> web.Response:
    # vLLM writes UTF-8 JSON, not ASCII escapes: Japanese replies stay readable in `curl -i`.
    return web.json_response(body, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


async def _send_event(response: web.StreamResponse, payload: dict) -> None:
    await response.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")


async def _json_body(request: web.Request) -> dict:
    raw = await request.read()
    content_type = request.headers.get("Content-Type")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        body, invalid = None, _bad_request(f"Invalid JSON body: {error}")
    else:
        invalid = None
    # vLLM's completion routes depend on validate_json_request (vllm/entrypoints/openai/api_server.py,
    # v0.8.5), which refuses any media type but application/json, or none, with FastAPI's
    # HTTPException body. Only an untyped non-empty body is parsed (and refused as JSON) before that.
    untyped_bad_json = content_type is None and raw and invalid is not None
    if (content_type or "").lower().split(";", maxsplit=1)[0] != "application/json" and not untyped_bad_json:
        raise UnsupportedMediaType()
    if invalid is not None:
        raise invalid
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object")
    return body
