"""A vLLM-compatible OpenAI server for one Ready pod: the subset the tutorial and the gateway use."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from sandbox.dataplane import textgen
from sandbox.dataplane.engine import Engine, Latency
from sandbox.dataplane.podspec import ModelServerSpec

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request vLLM refuses, carried to the handler as the vLLM error object."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def response(self) -> web.Response:
        body = {
            "object": "error",
            "message": self.message,
            "type": self.error_type,
            "param": None,
            "code": self.status,
        }
        return _json_response(body, status=self.status)


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
        self._runner = web.AppRunner(self.application(), shutdown_timeout=0.2, access_log=None)
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
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
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
        stream_options = body.get("stream_options") or {}
        return Generation(
            model=model,
            prompt_text=prompt_text,
            seed_text=seed_text,
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        )

    # -- generation ----------------------------------------------------------------------------------

    async def _serve(self, request: web.Request, generation: Generation, chat: bool) -> web.StreamResponse:
        pieces, finish_reason = textgen.reply_tokens(generation.seed_text, generation.max_tokens)
        prompt_tokens = textgen.count_tokens(generation.prompt_text)
        shape = _ResponseShape(chat=chat, model=generation.model)
        if generation.stream:
            return await self._stream(request, generation, shape, pieces, finish_reason, prompt_tokens)
        async with self.engine.sequence(prompt_tokens) as sequence:
            for _ in pieces:
                await sequence.next_token()
        self.engine.record_success(finish_reason, prompt_tokens, len(pieces))
        return _json_response(shape.full(pieces, finish_reason, prompt_tokens))

    async def _stream(
        self,
        request: web.Request,
        generation: Generation,
        shape: _ResponseShape,
        pieces: list[str],
        finish_reason: str,
        prompt_tokens: int,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        async with self.engine.sequence(prompt_tokens) as sequence:
            if shape.chat:
                await _send_event(response, shape.chunk({"role": "assistant", "content": ""}, None))
            for piece in pieces:
                await sequence.next_token()
                await _send_event(response, shape.chunk(piece, None))
        await _send_event(response, shape.chunk("" if not shape.chat else {}, finish_reason))
        if generation.include_usage:
            await _send_event(response, shape.usage_chunk(prompt_tokens, len(pieces)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.engine.record_success(finish_reason, prompt_tokens, len(pieces))
        return response


class _ResponseShape:
    """OpenAI response objects for chat or text completions, sharing one id and creation time."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.model = model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, object_name: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def full(self, pieces: list[str], finish_reason: str, prompt_tokens: int) -> dict:
        text = "".join(pieces)
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("text_completion", [choice])
        body["usage"] = self._usage(prompt_tokens, len(pieces))
        return body

    def chunk(self, delta: str | dict, finish_reason: str | None) -> dict:
        if self.chat:
            content = delta if isinstance(delta, dict) else {"content": delta}
            choice = {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}
            return self._envelope("chat.completion.chunk", [choice])
        choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("text_completion", [choice])

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = self._usage(prompt_tokens, completion_tokens)
        return body


def _json_response(body: dict, status: int = 200) -> web.Response:
    # vLLM writes UTF-8 JSON, not ASCII escapes: Japanese replies stay readable in `curl -i`.
    return web.json_response(body, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


async def _send_event(response: web.StreamResponse, payload: dict) -> None:
    await response.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")


async def _json_body(request: web.Request) -> dict:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _bad_request(f"Invalid JSON body: {error}") from None
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object")
    return body
