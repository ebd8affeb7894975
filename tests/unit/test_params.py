"""The params refuse bad input on their own (single fields) and together (validation.py)."""

from __future__ import annotations

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from gke_inference.params import build_params, schedule_mode
from gke_inference.validation import InvalidParams, effective_mode, effective_on_failure, validate_params


def resolved(**overrides) -> dict:
    params = ParamsDict(build_params())
    for key, value in overrides.items():
        params[key] = value  # ParamsDict validates on assignment
    return params.validate()


def test_defaults_are_valid_together():
    validate_params(resolved())


def test_every_param_has_a_title_a_description_and_a_section():
    for name, param in build_params().items():
        assert isinstance(param, Param)
        assert param.description, name
        assert param.schema.get("title"), name
        assert param.schema.get("section"), name


@pytest.mark.parametrize(
    "key, value",
    [
        ("cluster_name", "Inference-Lab"),
        ("cluster_name", "a" * 41),
        ("network_name", "bad_name"),
        ("network_name", ""),
        ("subnet_range", "10.0.0.0/33"),
        ("subnet_range", "10.0.0"),
        ("region", "mars-north1"),
        ("replicas", 0),
        ("replicas", 100),
        ("replicas", "two"),
        ("model_name", ""),
        ("mode", "destroy"),
        ("project_id", "UPPER-case-1"),
        ("gateway_port", 70000),
        ("use_existing_network", "yes"),
        ("max_model_len", 0),
        ("max_model_len", 10**6),
        ("max_model_len", "long"),
    ],
)
def test_single_field_rules_refuse_bad_values(key, value):
    with pytest.raises(ParamValidationError):
        resolved(**{key: value})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pods_range": "10.0.0.0/14"}, "overlaps"),
        ({"proxy_subnet_range": "10.8.0.0/23"}, "overlaps"),
        ({"subnet_range": "10.0.0.1/20"}, "not a valid network range"),
        # GCP prohibits loopback in subnets; a public range (8.8.0.0/20) is allowed as privately used.
        ({"subnet_range": "127.0.0.0/20"}, "loopback .* GCP prohibits"),
        ({"pods_range": "10.4.0.0/24"}, "/21 or larger"),
        ({"wrong_model_name": "meta-llama/Llama-3.1-8B-Instruct"}, "wrong_model_name"),
        ({"services_range_name": "pods-range"}, "must differ"),
        ({"gpu_count": 3}, "nvidia-l4 only in counts of 1, 2, 4, 8 per pod, got 3"),
        ({"gpu_type": "nvidia-h200-141gb"}, "counts of 8 per pod, got 1"),
        ({"max_model_len": 131072}, "max_model_len 131072 needs 16.0 GiB of KV cache; nvidia-l4 x1"),
        ({"max_model_len": 131072}, "Lower max_model_len or use more or bigger GPUs"),
        ({"model_name": "meta-llama/Llama-3.1-70B-Instruct"}, "after 131.4 GiB of weights"),
    ],
)
def test_cross_field_rules_refuse_inconsistent_sets(overrides, message):
    with pytest.raises(InvalidParams, match=message):
        validate_params(resolved(**overrides))


def test_scheduled_runs_rebuild_and_manual_runs_do_what_they_ask():
    assert effective_mode("ensure", "scheduled") == "rebuild"
    assert effective_mode("ensure", "manual") == "ensure"
    assert effective_mode("teardown", "manual") == "teardown"


def test_scheduled_runs_do_the_schedule_mode_and_manual_runs_what_they_ask():
    assert effective_mode("rebuild", "scheduled", "ensure") == "ensure"
    assert effective_mode("ensure", "scheduled", "rebuild") == "rebuild"
    assert effective_mode("teardown", "manual", "ensure") == "teardown"


def test_the_schedule_mode_comes_from_the_environment_and_a_wrong_one_is_refused(monkeypatch):
    monkeypatch.delenv("GKE_INFERENCE_SCHEDULE_MODE", raising=False)
    assert schedule_mode() == "rebuild"
    monkeypatch.setenv("GKE_INFERENCE_SCHEDULE_MODE", "Ensure ")
    assert schedule_mode() == "ensure"
    monkeypatch.setenv("GKE_INFERENCE_SCHEDULE_MODE", "teardown")
    with pytest.raises(
        ValueError, match="GKE_INFERENCE_SCHEDULE_MODE is 'teardown'; use one of rebuild, ensure"
    ):
        schedule_mode()


def test_a_failed_build_is_kept_when_someone_watches_and_torn_down_when_nobody_does():
    assert effective_on_failure(None, "manual") == "keep"
    assert effective_on_failure(None, "scheduled") == "teardown"
    assert effective_on_failure("keep", "scheduled") == "keep"
    assert effective_on_failure("teardown", "manual") == "teardown"


@pytest.mark.parametrize(
    ("name", "value"),
    [("on_failure", "destroy"), ("keep_for_hours", -1), ("keep_for_hours", 721), ("keep_for_hours", "1")],
)
def test_the_cost_guard_params_refuse_bad_values(name, value):
    with pytest.raises(ParamValidationError):
        resolved(**{name: value})


def test_keep_for_hours_takes_a_fraction_of_an_hour():
    assert resolved(keep_for_hours=0.0005, on_failure="teardown")["keep_for_hours"] == 0.0005


def test_the_default_max_model_len_fits_the_default_gpu():
    defaults = resolved()
    assert (defaults["max_model_len"], defaults["gpu_type"], defaults["gpu_count"]) == (8192, "nvidia-l4", 1)
    validate_params(defaults)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_model_len": 131072, "gpu_count": 2},
        {"max_model_len": 131072, "gpu_type": "nvidia-tesla-a100"},
        {"max_model_len": 131072, "gpu_type": "nvidia-h200-141gb", "gpu_count": 8},
        # A model the DAG has no shape for is not checked: vLLM decides on the cluster.
        {"max_model_len": 131072, "model_name": "Qwen/Qwen2.5-7B-Instruct"},
    ],
)
def test_gpu_sets_that_fit_are_accepted(overrides):
    validate_params(resolved(**overrides))


def test_every_schema_is_a_valid_draft_07_schema_and_is_checked_as_one():
    """The dialect is what makes Airflow's per-task resolves cheap (params.SCHEMA_DIALECT)."""
    from jsonschema import Draft7Validator, validators

    for name, param in build_params().items():
        Draft7Validator.check_schema(param.schema)
        assert validators.validator_for(param.schema) is Draft7Validator, name
