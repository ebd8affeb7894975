"""What marks a container as a vLLM model server, and what vLLM needs from Hugging Face."""

from __future__ import annotations

from typing import Any

HF_TOKEN_VARIABLES = ("HUGGING_FACE_HUB_TOKEN", "HF_TOKEN")
# Hugging Face organisations whose models need an accepted licence and a token to download.
GATED_MODEL_PREFIXES = ("meta-llama/",)

HF_TOKEN_FAILURE = (
    "OSError: You are trying to access a gated repo. 401 Client Error: Unauthorized for url "
    "https://huggingface.co/api/models (the Hugging Face token is missing, empty or invalid; "
    "set HUGGING_FACE_HUB_TOKEN from a valid hf-token Secret)"
)


def served_model(container: dict[str, Any]) -> str:
    """The model a vLLM container serves (`--model X`, `--model=X` or `vllm serve X`), or ""."""
    words = [str(w) for w in (*(container.get("command") or []), *(container.get("args") or []))]
    for index, word in enumerate(words):
        if word == "--model" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--model="):
            return word.removeprefix("--model=")
        if word == "serve" and index + 1 < len(words) and not words[index + 1].startswith("-"):
            return words[index + 1]
    return ""


def is_model_server(pod: dict[str, Any]) -> bool:
    for container in (pod.get("spec") or {}).get("containers") or []:
        words = [
            container.get("image", ""),
            *(container.get("command") or []),
            *(container.get("args") or []),
        ]
        if any("vllm" in str(w) or str(w).startswith("--model") for w in words):
            return True
    return False
