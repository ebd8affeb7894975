"""Setup cost: a cold install of the lock with uv, and the wall time of `make test`.

Install: `uv pip sync requirements/dev.txt` into a fresh venv with an empty, temporary uv cache (every
wheel comes from PyPI), then again into another fresh venv with that cache now warm; the figure is
cold / warm. Only with BENCH_INSTALL=1 (it downloads ~1.5 GB and gives no figure issue 14 asks for).

`make test`: the whole suite takes minutes, so bench runs it (the same pytest `make test` runs)
only with BENCH_RUN_TESTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "dev.txt"
INSTALL_TIMEOUT_S = 1800
TEST_TIMEOUT_S = 1800
TEST_BUDGET_S = 15 * 60
UV = ["python3", "-m", "uv"]  # as the Makefile runs it: uv installed into the system Python


def install_requested() -> bool:
    return os.environ.get("BENCH_INSTALL") == "1"


def tests_requested() -> bool:
    return os.environ.get("BENCH_RUN_TESTS") == "1"


def measure_install(lock: Path = LOCK) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        cache = Path(tmp) / "uv-cache"
        cold = _sync_into_fresh_venv(Path(tmp) / "cold", cache, lock)
        downloaded = _tree_bytes(cache)
        warm = _sync_into_fresh_venv(Path(tmp) / "warm", cache, lock)
    return {
        "skipped": False,
        "packages": _locked_packages(lock),
        "cold_s": cold,
        "warm_s": warm,
        "cache_mb": downloaded / 1e6,
        "ratio_cold_to_warm": cold / warm,
        "measured_at": _now(),
    }


def measure_tests() -> dict:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TEST_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - started
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else ""
    return {
        "measured": True,
        "carried_forward": False,
        "seconds": seconds,
        "budget_s": TEST_BUDGET_S,
        "ratio_to_budget": seconds / TEST_BUDGET_S,
        "exit_code": completed.returncode,
        "summary": summary,
        "measured_at": _now(),
    }


def _sync_into_fresh_venv(venv: Path, cache: Path, lock: Path) -> float:
    env = {**os.environ, "UV_CACHE_DIR": str(cache)}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [*UV, "venv", "--quiet", "--python", "3.11", "--no-python-downloads", str(venv)],
        env=env,
        check=True,
        timeout=120,
    )
    started = time.monotonic()
    subprocess.run(
        [*UV, "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python"), str(lock)],
        env=env,
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    seconds = time.monotonic() - started
    shutil.rmtree(venv, ignore_errors=True)
    return seconds


def _locked_packages(lock: Path) -> int:
    return sum(1 for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line))


def _tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
