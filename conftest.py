"""Airflow settings for every test run, also when pytest is started without make.

They must be in the environment before anything imports airflow, hence a root conftest.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent

for name, value in {
    "AIRFLOW_HOME": str(REPO / ".airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",
}.items():
    os.environ.setdefault(name, value)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test that needs a missing CLI skips with a reason, or fails under CI=true (tests/_tools.py)."""
    from tests._tools import check_tools

    check_tools(item)
