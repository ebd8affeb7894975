"""Print how many tests ran, passed, failed and skipped, with every skip reason.

`.ci/run` points pytest at a JUnit XML report per command (PYTEST_ADDOPTS=--junitxml=...) and
calls this at the end:  python -m scripts.test_summary NAME=REPORT.xml ...
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def summarize(report: Path) -> tuple[Counter, Counter]:
    """Outcome counts and skip reasons (reason -> how many tests) of one JUnit XML report."""
    outcomes: Counter = Counter()
    reasons: Counter = Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            outcomes["skipped"] += 1
            reasons[skipped.get("message", "").removeprefix("Skipped: ") or "no reason given"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"] += 1
        else:
            outcomes["passed"] += 1
    return outcomes, reasons


def main(arguments: list[str]) -> int:
    for argument in arguments:
        name, _, path = argument.partition("=")
        report = Path(path)
        if not report.is_file():
            print(f"{name}: did not run (no report at {report})")
            continue
        outcomes, reasons = summarize(report)
        ran = outcomes["passed"] + outcomes["failed"]
        print(
            f"{name}: {ran} ran ({outcomes['passed']} passed, {outcomes['failed']} failed), "
            f"{outcomes['skipped']} skipped"
        )
        for reason, count in reasons.most_common():
            print(f"  skipped {count}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
