"""Deterministic text for the simulated model: a toy tokenizer and echo-like replies seeded by the prompt.

The tokenizer splits ASCII words and single other characters (each CJK character is one token), keeping
the leading whitespace on each piece so that joining the pieces gives the text back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_TOKEN = re.compile(r"\s*(?:[A-Za-z0-9_]+|[^\sA-Za-z0-9_])")

# Replies without max_tokens stop after a length between these bounds, chosen by the prompt's hash.
_MIN_NATURAL_TOKENS = 8
_MAX_NATURAL_TOKENS = 40
_FILLER = ("The", " sandbox", " model", " answers", " deterministically", ".")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def chat_prompt_text(messages: Sequence[dict]) -> str:
    """The prompt a chat template would produce, close enough for token counting and prefix hashing."""
    return "".join(f"<|{m.get('role', 'user')}|>\n{_content_text(m.get('content'))}\n" for m in messages)


def last_user_text(messages: Sequence[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return _content_text(messages[-1].get("content")) if messages else ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def reply_tokens(seed_text: str, max_tokens: int | None, ignore_eos: bool = False) -> tuple[list[str], str]:
    """Return (pieces, finish_reason): the seed text echoed, cycled to a length chosen by its hash.

    With ignore_eos the model never stops by itself, so the reply is exactly max_tokens long, as vLLM's
    SamplingParams.ignore_eos does (vllm/sampling_params.py, v0.8.5: "Whether to ignore the EOS token
    and continue generating tokens after the EOS token is generated")."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    natural = _MIN_NATURAL_TOKENS + digest[0] % (_MAX_NATURAL_TOKENS - _MIN_NATURAL_TOKENS + 1)
    if max_tokens is not None and ignore_eos:
        natural = max_tokens + 1  # no end-of-sequence token: only max_tokens stops the reply
    source = tokenize(seed_text) or list(_FILLER)
    length = natural if max_tokens is None else min(natural, max_tokens)
    pieces = [source[i % len(source)] for i in range(length)]
    for start in range(len(source), length, len(source)):  # a space where the echo wraps around
        if pieces[start][:1].isascii() and pieces[start][:1].isalnum():
            pieces[start] = " " + pieces[start]
    if pieces:
        pieces[0] = pieces[0].lstrip()
    finish_reason = "length" if max_tokens is not None and max_tokens < natural else "stop"
    return pieces, finish_reason
