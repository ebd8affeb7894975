"""Typed task arguments: a number of seconds, a flag. Nothing is parsed back from a string.

The DAG passes native values (``plan["pods_timeout"]``, an int), so a string here is a DAG
author's mistake: a TypeError when the operator is built, or, for a value that only arrives at
run time (an XComArg), an InvalidInputError then, which fails the task without retries.
"""

from __future__ import annotations

from gke_inference.hooks._errors import InvalidInputError


class WrongTypeError(InvalidInputError, TypeError):
    """A value of the wrong type: a TypeError to the DAG author, terminal to the task."""


def arrives_later(value: object) -> bool:
    """An XComArg (or any template) is resolved when the task runs, not when the DAG is parsed."""
    from airflow.sdk.definitions._internal.mixins import ResolveMixin

    return isinstance(value, ResolveMixin)


def seconds(value: object, name: str) -> float:
    """A positive number of seconds: an int or a float, not a bool nor a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WrongTypeError(f"{name} must be a number of seconds, got {value!r}")
    if value <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}")
    return float(value)


def flag(value: object, name: str) -> bool:
    """A bool, not the string "true"."""
    if not isinstance(value, bool):
        raise WrongTypeError(f"{name} must be true or false (a bool), got {value!r}")
    return value


def check_when_built(check, value: object, name: str) -> None:
    """Run ``check`` at construction unless the value only arrives at run time: a wrong type is a
    TypeError, a wrong value a ValueError, both raised as the DAG is parsed."""
    if not arrives_later(value):
        check(value, name)
