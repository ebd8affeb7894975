"""Tests that need a command-line tool (gcloud, kubectl, chromium, jq, curl).

Mark them with `needs_tools("kubectl")`. The root conftest checks the marker before each test:
a missing tool skips the test with a reason, except under `CI=true`, where it fails the test, so
a CI machine that lost a tool cannot turn its tests into silent skips.
"""

from __future__ import annotations

import os
import shutil

import pytest


def needs_tools(*tools: str, hint: str = "") -> pytest.MarkDecorator:
    """The `tools` marker naming the executables (names on PATH or absolute paths) a test runs."""
    if not tools:
        raise ValueError("needs_tools() must name at least one tool")
    return pytest.mark.tools(*tools, hint=hint)


def in_ci() -> bool:
    """GitHub Actions, GitLab and most CI services set CI=true; `.ci/run` sets it too."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing_tools(tools: tuple[str, ...]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def check_tools(item: pytest.Item) -> None:
    """Skip (or, under CI=true, fail) a test whose `tools` marker names a missing executable."""
    for mark in item.iter_markers("tools"):
        if not mark.args:
            pytest.fail("the `tools` marker must name the tools: use tests._tools.needs_tools(...)")
        missing = missing_tools(mark.args)
        if not missing:
            continue
        reason = f"{', '.join(missing)} not found on PATH"
        if mark.kwargs.get("hint"):
            reason += f" ({mark.kwargs['hint']})"
        if in_ci():
            pytest.fail(f"CI=true and {reason}: CI must install it, not skip", pytrace=False)
        pytest.skip(reason)
