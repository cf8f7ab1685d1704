"""Shared helpers: run the real CLI in a subprocess with the installed torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _hypothesis_profiles() -> None:
    """Register the dev/ci/nightly profiles of harness.strategies; load $HYPOTHESIS_PROFILE when set."""
    try:
        from harness import strategies
    except ImportError:  # hypothesis (the fuzz extra) is not installed
        return
    strategies.register_profiles()
    if os.environ.get(strategies.PROFILE_VARIABLE):
        strategies.load_profile()


_hypothesis_profiles()


def run_cli(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in a fresh interpreter; the repo root is importable (for plugins)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def index(recs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``{(case, format, check): record}``, keeping the first record that is not a skip.

    Pickles are loaded three ways; most checks run under the first mode that loads and record a
    skip for the others, so the first non-skip record is the one that says what was found.
    """
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in recs:
        key = (r["case"], r["format"], r["check"])
        if key not in out or out[key]["status"] == "skip":
            out[key] = r
    return out


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime (ns) of every file under ``root``: compare before/after to prove nothing changed."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="session")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of every case × format, produced once per test session by the real CLI."""
    out = tmp_path_factory.mktemp("artifacts")
    result = run_cli("produce", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out
