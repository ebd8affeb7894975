"""Which commit a bench run measured, and whether the code a figure describes changed since."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The code every DAG-run figure depends on; a figure may name fewer.
CODE_PATHS = ("src", "dags", "sandbox", "bench")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def code_state(repo: Path = REPO) -> dict:
    """The commit measured and whether the tree had changes not in it (then the commit is a floor)."""
    head = _git(repo, "rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = _git(repo, "status", "--porcelain", "--", *CODE_PATHS).stdout.strip() != ""
    return {"commit": head.stdout.strip(), "dirty": dirty}


def is_stale(commit: str | None, paths: tuple[str, ...] = CODE_PATHS, repo: Path = REPO) -> bool | None:
    """True when `paths` differ between `commit` and HEAD; None when it cannot be told."""
    if not commit:
        return None
    changed = _git(repo, "diff", "--quiet", commit, "HEAD", "--", *paths)
    if changed.returncode in (0, 1):
        return changed.returncode == 1
    return None
