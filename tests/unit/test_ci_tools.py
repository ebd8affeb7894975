"""CI cannot skip silently: a missing tool skips locally but fails under CI=true; the CI summary counts."""

from __future__ import annotations

import pytest

from scripts.test_summary import summarize
from tests._tools import check_tools, needs_tools


class FakeItem:
    """What check_tools reads from a pytest item: its `tools` markers."""

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self._marks = [mark.mark for mark in marks]

    def iter_markers(self, name: str):
        return (mark for mark in self._marks if mark.name == name)


def outcome(item: FakeItem) -> tuple[str, str]:
    """("pass" | "skip" | "fail", message) of check_tools, caught here so that a skip cannot
    escape and turn this very test into a skip."""
    try:
        check_tools(item)
    except pytest.skip.Exception as skipped:
        return "skip", str(skipped)
    except pytest.fail.Exception as failed:
        return "fail", str(failed)
    return "pass", ""


@pytest.fixture
def no_kubectl(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing is found


def test_a_missing_tool_skips_with_its_name_outside_ci(no_kubectl, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert outcome(FakeItem(needs_tools("kubectl"))) == ("skip", "kubectl not found on PATH")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_tool_fails_under_ci(no_kubectl, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result, message = outcome(FakeItem(needs_tools("kubectl", hint="apt-get install kubectl")))
    assert result == "fail", message
    assert message.startswith("CI=true and kubectl not found on PATH (apt-get install kubectl)")


def test_present_tools_and_absolute_paths_pass(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    tool = tmp_path / "fake-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert outcome(FakeItem(needs_tools("fake-tool"), needs_tools(str(tool)))) == ("pass", "")


def test_a_tools_marker_without_names_is_refused():
    result, message = outcome(FakeItem(pytest.mark.tools))
    assert result == "fail" and "must name the tools" in message
    with pytest.raises(ValueError, match="at least one tool"):
        needs_tools()


def test_the_summary_counts_outcomes_and_skip_reasons(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase name="a"/>'
        '<testcase name="b"><failure message="boom"/></testcase>'
        '<testcase name="c"><error message="setup"/></testcase>'
        '<testcase name="d"><skipped message="kubectl not found on PATH"/></testcase>'
        '<testcase name="e"><skipped message="kubectl not found on PATH"/></testcase>'
        "</testsuite></testsuites>"
    )
    outcomes, reasons = summarize(report)
    assert dict(outcomes) == {"passed": 1, "failed": 2, "skipped": 2}
    assert dict(reasons) == {"kubectl not found on PATH": 2}
