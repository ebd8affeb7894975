"""Rendered template values back to Python values ("{{ params.x }}" renders as a string).

Shared by operators and sensors; these go once the DAG passes typed values.
"""

from __future__ import annotations

from gke_inference.hooks._errors import InvalidInputError

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
_UNSET = frozenset({"", "None", "null"})


def optional_param(value: str | None) -> str | None:
    """A templated optional value: "{{ params.x }}" renders null as "None"."""
    return None if value is None or str(value).strip() in _UNSET else str(value).strip()


def as_bool(value: object, name: str) -> bool:
    """A boolean from a bool or from the string a Jinja template renders ("True", "false", ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be true or false, got {value!r}")


def as_seconds(value: object, name: str) -> float:
    """A positive number of seconds from a number or its rendered string."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}")
    return seconds
