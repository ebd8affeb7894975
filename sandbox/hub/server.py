"""Hugging Face Hub: model info and the gated-access check, for the tokens and repos the twin knows.

Answers and headers are the Hub's: huggingface_hub reads `X-Error-Code` and `X-Error-Message` to
pick its exception (huggingface_hub/utils/_http.py, hf_raise_for_status: GatedRepo -> GatedRepoError,
RepoNotFound -> RepositoryNotFoundError, and a 401 whose message is "Invalid credentials in
Authorization header" is a bad token rather than a missing repo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from sandbox.core.faults import FaultHost, fault_middleware

HUB_URL = "https://huggingface.co"
# The Hub's answer to a token it does not know, on every endpoint (body and X-Error-Message).
INVALID_TOKEN = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Repo:
    gated: str | bool  # "manual" or "auto" when access must be requested, as model_info reports it
    pipeline_tag: str = "text-generation"
    sha: str | None = None


# The models the DAG's params name. Llama 3.1 is gated with manual review ("gated": "manual" in
# GET /api/models/meta-llama/Llama-3.1-8B-Instruct); Qwen2.5 is open. The 8B-Instruct sha is its
# main revision as the Hub resolves it (seen in .../resolve/0e9e39f2.../.gitattributes URLs).
REPOS: dict[str, Repo] = {
    "meta-llama/Llama-3.1-8B-Instruct": Repo("manual", sha="0e9e39f249a16976918f6564b8830bc894c89659"),
    "meta-llama/Llama-3.1-8B": Repo("manual"),
    "meta-llama/Llama-3.1-70B-Instruct": Repo("manual"),
    "Qwen/Qwen2.5-7B-Instruct": Repo(False),
}


@dataclass
class HubState:
    """Tokens the twin's Hub knows: True when the token's user was granted the gated repos."""

    tokens: dict[str, bool] = field(default_factory=dict)

    def add_token(self, token: str, gated_access: bool = True) -> None:
        self.tokens[token] = gated_access


class HubHost(FaultHost, Protocol):
    """What the Hub twin reads from its sandbox."""

    hub: HubState


def build_hub_app(sandbox: HubHost) -> web.Application:
    hub = HubApi(sandbox.hub)
    app = web.Application(middlewares=[fault_middleware("hub", sandbox)])
    models = "/api/models/{namespace}/{name}"
    app.router.add_get(models, hub.model_info)
    app.router.add_get(models + "/revision/{revision}", hub.model_info)
    app.router.add_get(models + "/auth-check", hub.auth_check)
    return app


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    headers = {"X-Error-Message": message}
    if code is not None:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


class HubApi:
    def __init__(self, state: HubState) -> None:
        self._state = state

    async def model_info(self, request: web.Request) -> web.Response:
        """GET /api/models/{repo_id}[/revision/{rev}]: metadata, readable without access to a gated
        repo (only files are gated), as on the Hub."""
        repo_id, repo, refusal = self._look_up(request)
        if refusal is not None:
            return refusal
        revision = request.match_info.get("revision", "main")
        if revision not in ("main", repo.sha):
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return web.json_response(_model_info(repo_id, repo))

    async def auth_check(self, request: web.Request) -> web.Response:
        """GET /api/models/{repo_id}/auth-check: 200 "OK" when the caller may read the files;
        GatedRepo (401 anonymous, 403 without a granted request) otherwise."""
        repo_id, repo, refusal = self._look_up(request)
        if refusal is not None:
            return refusal
        if not repo.gated:
            return web.Response(text="OK")
        token = _bearer(request)
        if token is None:
            return _error(
                401,
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                "GatedRepo",
            )
        if not self._state.tokens[token]:
            return _error(
                403,
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {HUB_URL}/{repo_id} to ask for access.",
                "GatedRepo",
            )
        return web.Response(text="OK")

    def _look_up(self, request: web.Request) -> tuple[str, Repo, web.Response | None]:
        """The repo, or the Hub's refusal: a bad token first, then a missing repo (401 when
        anonymous, since the Hub does not tell anonymous callers which repos exist; 404 otherwise)."""
        repo_id = f"{request.match_info['namespace']}/{request.match_info['name']}"
        repo = REPOS.get(repo_id)
        token = _bearer(request)
        if token is not None and token not in self._state.tokens:
            return repo_id, repo, _error(401, INVALID_TOKEN)
        if repo is None:
            if token is None:
                return repo_id, repo, _error(401, "Invalid username or password.", "RepoNotFound")
            return repo_id, repo, _error(404, "Repository not found", "RepoNotFound")
        return repo_id, repo, None


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _model_info(repo_id: str, repo: Repo) -> dict:
    author = repo_id.split("/", 1)[0]
    info: dict = {
        "id": repo_id,
        "modelId": repo_id,
        "author": author,
        "private": False,
        "disabled": False,
        "gated": repo.gated,
        "pipeline_tag": repo.pipeline_tag,
        "library_name": "transformers",
        "tags": ["transformers", "safetensors", repo.pipeline_tag],
    }
    if repo.sha is not None:
        info["sha"] = repo.sha
    return info
