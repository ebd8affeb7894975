"""Both sides of every bound: the value at the bound is accepted, one step past it is refused.

The bounds are read from the params' own schemas, so a bound added later is covered too; the
issue's examples (a /27 services range, a 40-character cluster name, 1 and 16 replicas) are named.
"""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from gke_inference.params import build_params
from gke_inference.validation import SMALLEST_PREFIX, InvalidParams, validate_params

PARAMS = build_params()


def resolved(**overrides) -> dict:
    params = ParamsDict(build_params())
    for key, value in overrides.items():
        params[key] = value
    return params.validate()


def schema_refuses(key, value) -> bool:
    try:
        resolved(**{key: value})
    except ParamValidationError:
        return True
    return False


def text_of_length(key: str, length: int) -> str:
    """A value of this length that matches the param's pattern."""
    if key in ("model_name", "wrong_model_name"):
        return "a/" + "b" * (length - 2)
    return "a" * length


NUMBER_BOUNDS = [
    (key, bound, side)
    for key, param in PARAMS.items()
    for side, bound in (("minimum", param.schema.get("minimum")), ("maximum", param.schema.get("maximum")))
    if bound is not None
]
LENGTH_BOUNDS = [
    (key, bound, side)
    for key, param in PARAMS.items()
    for side, bound in (
        ("minLength", param.schema.get("minLength")),
        ("maxLength", param.schema.get("maxLength")),
    )
    if bound is not None and not (side == "minLength" and bound <= 1 and param.schema.get("pattern"))
]


def test_every_bounded_param_is_covered():
    bounded = {key for key, *_ in NUMBER_BOUNDS + LENGTH_BOUNDS}
    assert bounded >= {"replicas", "gpu_count", "gateway_port", "max_tokens", "max_model_len", "cluster_name"}
    # The connections and the image are choices from a list (deployment settings), not lengths.
    assert len(NUMBER_BOUNDS) >= 16 and len(LENGTH_BOUNDS) >= 17


@pytest.mark.parametrize("key, bound, side", NUMBER_BOUNDS, ids=[f"{k}-{s}" for k, _, s in NUMBER_BOUNDS])
def test_numbers_at_the_bound_pass_and_one_past_it_is_refused(key, bound, side):
    step = -1 if side == "minimum" else 1
    assert not schema_refuses(key, bound)
    assert schema_refuses(key, bound + step)


@pytest.mark.parametrize("key, bound, side", LENGTH_BOUNDS, ids=[f"{k}-{s}" for k, _, s in LENGTH_BOUNDS])
def test_lengths_at_the_bound_pass_and_one_past_it_is_refused(key, bound, side):
    step = -1 if side == "minLength" else 1
    assert not schema_refuses(key, text_of_length(key, bound))
    assert schema_refuses(key, text_of_length(key, bound + step))


@pytest.mark.parametrize(
    "value, refused", [("a" * 6, False), ("a" * 5, True), ("a" * 30, False), ("a" * 31, True)]
)
def test_project_id_is_6_to_30_characters(value, refused):
    assert schema_refuses("project_id", value) is refused


@pytest.mark.parametrize(
    "overrides, refused",
    [
        ({"cluster_name": "c" * 40}, False),
        ({"cluster_name": "c" * 41}, True),
        ({"replicas": 1}, False),
        ({"replicas": 16}, False),
        ({"replicas": 0}, True),
        ({"replicas": 17}, True),
        ({"gateway_port": 1}, False),
        ({"gateway_port": 65535}, False),
        ({"gateway_port": 65536}, True),
    ],
)
def test_the_issue_examples(overrides, refused):
    ((key, value),) = overrides.items()
    assert schema_refuses(key, value) is refused
    if not refused:
        validate_params(resolved(**overrides))


SMALLER_BY_ONE = {
    "subnet_range": ("10.0.0.0/29", "10.0.0.0/30"),
    "pods_range": ("10.4.0.0/21", "10.4.0.0/22"),
    "services_range": ("10.8.0.0/27", "10.8.0.0/28"),
    "proxy_subnet_range": ("10.129.0.0/26", "10.129.0.0/27"),
}


@pytest.mark.parametrize("key", SMALLEST_PREFIX)
def test_each_range_at_its_smallest_size_passes_and_one_smaller_is_refused(key):
    smallest, too_small = SMALLER_BY_ONE[key]
    assert smallest.endswith(f"/{SMALLEST_PREFIX[key]}")
    validate_params(resolved(**{key: smallest}))
    with pytest.raises(
        InvalidParams, match=f"/{SMALLEST_PREFIX[key]} or larger, got /{SMALLEST_PREFIX[key] + 1}"
    ):
        validate_params(resolved(**{key: too_small}))


@pytest.mark.parametrize(
    "max_tokens, max_model_len, refused",
    [(4095, 4096, False), (4096, 4096, True), (255, 256, False), (256, 256, True)],
)
def test_max_tokens_must_leave_room_below_max_model_len(max_tokens, max_model_len, refused):
    params = resolved(max_tokens=max_tokens, max_model_len=max_model_len)
    if refused:
        with pytest.raises(InvalidParams, match="leaves no room for the prompt"):
            validate_params(params)
    else:
        validate_params(params)
