"""The params refuse bad input on their own (single fields) and together (validation.py)."""

from __future__ import annotations

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from gke_inference.params import build_params
from gke_inference.validation import InvalidParams, effective_mode, validate_params


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
        ({"subnet_range": "8.8.0.0/20"}, "private"),
        ({"pods_range": "10.4.0.0/24"}, "/21 or larger"),
        ({"wrong_model_name": "meta-llama/Llama-3.1-8B-Instruct"}, "wrong_model_name"),
        ({"services_range_name": "pods-range"}, "must differ"),
    ],
)
def test_cross_field_rules_refuse_inconsistent_sets(overrides, message):
    with pytest.raises(InvalidParams, match=message):
        validate_params(resolved(**overrides))


def test_scheduled_runs_rebuild_and_manual_runs_do_what_they_ask():
    assert effective_mode("ensure", "scheduled") == "rebuild"
    assert effective_mode("ensure", "manual") == "ensure"
    assert effective_mode("teardown", "manual") == "teardown"
