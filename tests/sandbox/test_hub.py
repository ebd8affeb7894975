"""huggingface_hub against the twin's Hub: the exceptions it raises are those the real Hub provokes."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

GATED = "meta-llama/Llama-3.1-8B-Instruct"
OPEN = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch):
    """Without it huggingface_hub fetches an "agent harnesses" list from huggingface.co."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


@pytest.fixture(scope="module")
def hub(sandbox):
    return lambda token: HfApi(endpoint=sandbox.info["hf_endpoint"], token=token)


def test_a_token_with_access_passes_the_auth_check_and_reads_model_info(sandbox, hub):
    api = hub(sandbox.sandbox.hf_token)
    api.auth_check(GATED)
    info = api.model_info(GATED)
    assert info.id == GATED and info.gated == "manual"
    assert info.sha == "0e9e39f249a16976918f6564b8830bc894c89659"


def test_a_token_without_access_is_refused_403_gated_but_still_reads_model_info(sandbox, hub):
    api = hub(sandbox.info["hf_token_without_access"])
    with pytest.raises(GatedRepoError) as raised:
        api.auth_check(GATED)
    assert raised.value.response.status_code == 403
    assert raised.value.response.headers["X-Error-Code"] == "GatedRepo"
    assert (
        f"Access to model {GATED} is restricted and you are not in the authorized list. "
        f"Visit https://huggingface.co/{GATED} to ask for access." in str(raised.value)
    )
    # As on the Hub, a gated repo's metadata is public: model_info alone cannot tell access.
    assert api.model_info(GATED).gated == "manual"
    api.auth_check(OPEN)


def test_an_invalid_token_is_refused_401_as_bad_credentials_not_as_a_missing_repo(hub):
    api = hub("hf_not_a_token_the_hub_knows")
    for call in (lambda: api.auth_check(GATED), lambda: api.model_info(OPEN)):
        with pytest.raises(HfHubHTTPError) as raised:
            call()
        assert raised.value.response.status_code == 401
        assert (
            raised.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
        )
        assert not isinstance(raised.value, RepositoryNotFoundError | GatedRepoError)


def test_no_token_is_refused_401_gated_on_a_gated_repo(sandbox):
    api = HfApi(endpoint=sandbox.info["hf_endpoint"], token=False)
    with pytest.raises(GatedRepoError) as raised:
        api.auth_check(GATED)
    assert raised.value.response.status_code == 401
    assert "Please log in." in str(raised.value)


def test_an_unknown_repo_is_404_repository_not_found(sandbox, hub):
    with pytest.raises(RepositoryNotFoundError) as raised:
        hub(sandbox.sandbox.hf_token).auth_check("meta-llama/Llama-9-Nonexistent")
    assert raised.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        hub(sandbox.sandbox.hf_token).model_info(GATED, revision="not-a-revision")


def test_hub_requests_are_logged_and_take_faults(sandbox, clean_faults):
    sandbox.faults_add(api="hub", status=503, count=1)
    url = f"{sandbox.info['hf_endpoint']}/api/models/{OPEN}/auth-check"
    assert httpx.get(url).status_code == 503
    assert httpx.get(url).status_code == 200
    statuses = [
        entry["status"] for entry in sandbox.requests("hub") if entry["path"].endswith(f"{OPEN}/auth-check")
    ]
    assert statuses[-2:] == [503, 200]


def test_the_connection_in_info_points_at_the_twin(sandbox):
    import json

    connection = json.loads(sandbox.info["airflow_connections"]["huggingface_default"])
    assert connection["extra"] == {"endpoint": sandbox.info["hf_endpoint"]}
    assert connection["password"] == sandbox.sandbox.hf_token
    assert sandbox.info["hf_endpoint"].startswith("http://127.0.0.1:")
