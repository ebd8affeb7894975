"""Connections and the vLLM image are deployment settings: a run picks only from the deployment's
allow-list (environment, read at parse time), so a trigger cannot name any connection or image."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from gke_inference.params import (
    DEFAULT_VLLM_IMAGE,
    GCP_CONN_IDS_ENV,
    HF_CONN_IDS_ENV,
    VLLM_IMAGES_ENV,
    build_params,
)


def test_without_settings_each_has_one_choice_its_default():
    params = build_params()
    assert params["gcp_conn_id"].schema["enum"] == ["google_cloud_default"]
    assert params["hf_conn_id"].schema["enum"] == ["huggingface_default"]
    assert params["vllm_image"].schema["enum"] == [DEFAULT_VLLM_IMAGE]
    assert params["vllm_image"].value == DEFAULT_VLLM_IMAGE


def test_the_deployment_list_is_the_choice_and_its_first_entry_the_default(monkeypatch):
    monkeypatch.setenv(GCP_CONN_IDS_ENV, " gcp_staging , gcp_prod,gcp_staging")
    monkeypatch.setenv(VLLM_IMAGES_ENV, "vllm/vllm-openai:v0.8.5,registry.example/vllm:v0.9.0")
    params = build_params()
    assert params["gcp_conn_id"].schema["enum"] == ["gcp_staging", "gcp_prod"]
    assert params["gcp_conn_id"].value == "gcp_staging"
    chosen = ParamsDict(params)
    chosen["gcp_conn_id"] = "gcp_prod"
    chosen["vllm_image"] = "registry.example/vllm:v0.9.0"
    assert chosen.validate()["gcp_conn_id"] == "gcp_prod"


@pytest.mark.parametrize(
    "key, value",
    [
        ("gcp_conn_id", "someone_elses_connection"),
        ("hf_conn_id", "google_cloud_default"),
        ("vllm_image", "attacker/miner:latest"),
    ],
)
def test_a_run_cannot_pick_outside_the_list(key, value):
    params = ParamsDict(build_params())
    with pytest.raises(ParamValidationError):
        params[key] = value


@pytest.mark.parametrize(
    "env_var, raw, message",
    [
        (HF_CONN_IDS_ENV, " , ", "lists nothing"),
        (VLLM_IMAGES_ENV, "VLLM/OpenAI:latest", "do not match"),
    ],
)
def test_a_wrong_setting_fails_the_parse_naming_the_variable(monkeypatch, env_var, raw, message):
    monkeypatch.setenv(env_var, raw)
    with pytest.raises(ValueError, match=f"{env_var}.*{message}"):
        build_params()
