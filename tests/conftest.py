"""Shared helpers: run the real CLI in a subprocess with the installed torch, or produce in process.

Two tiers: ``pytest -m "not slow"`` runs in process in about a minute; ``slow`` marks every test that
drives the CLI in subprocesses, another torch release, or takes more than a few seconds.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every produce in the tests seals with a throwaway key (harness.trust), never the user's own; the
# subprocesses of run_cli inherit it, so their consume trusts what the session's produce wrote.
_KEY_FOLDER = tempfile.mkdtemp(prefix="ckpt-harness-key-")
atexit.register(shutil.rmtree, _KEY_FOLDER, True)
os.environ["CKPT_HARNESS_KEY_FILE"] = os.path.join(_KEY_FOLDER, "key")
os.environ.pop("CKPT_HARNESS_TRUST", None)


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

#: what starts another process: the CLI helper, subprocess, another interpreter, a release environment
SPAWNS = re.compile(r"\brun_cli\(|\bsubprocess\.|\bsys\.executable\b|\bPopen\(|runpytest_subprocess|releases/torch-")


@functools.cache
def spawns(func: Callable[..., Any]) -> bool:
    """Whether ``func``'s source, or a test helper it calls by name, starts another process."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    if SPAWNS.search(source):
        return True
    called = {name for name in re.findall(r"\b([A-Za-z_]\w*)\(", source)}
    helpers = (func.__globals__.get(name) for name in called)
    return any(inspect.isfunction(h) and h is not func and h.__module__.startswith("tests") and spawns(h)
               for h in helpers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that starts a process itself or through a fixture or test helper.

    The fast tier (``-m "not slow"``) is then in process by construction; tests that are slow for
    another reason carry ``@pytest.mark.slow`` themselves.
    """
    for item in items:
        if item.get_closest_marker("slow") or not isinstance(item, pytest.Function):
            continue
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs
                    if getattr(d.func, "__module__", "").startswith("tests")]
        if any(spawns(f) for f in [item.function, *fixtures]):
            item.add_marker(pytest.mark.slow)


REQUIRE_TORCHVISION = "CKPT_HARNESS_REQUIRE_TORCHVISION"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under ``CKPT_HARNESS_REQUIRE_TORCHVISION=1`` (``nox -s tests_vision``), a test skipped because
    torchvision does not import fails instead: that session exists to run those tests, not to skip them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(REQUIRE_TORCHVISION) and "torchvision does not import" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing torchvision, required by {REQUIRE_TORCHVISION}: {report.longrepr}"


@functools.cache
def noxfile_module() -> Any:
    """The project's noxfile as a module, loaded once per process (loading registers its sessions with nox)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_noxfile_under_test", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


#: the in-process matrix's cases: sharing and views, buffers and train mode, two models in one file
SMALL_CASES = ("tied", "batchnorm", "gan")


@pytest.fixture(scope="session")
def small_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small cases in every format available here, produced once per session in this process."""
    from harness.formats import FORMATS
    from harness.produce import produce

    out = tmp_path_factory.mktemp("small-artifacts")
    produce(out, SMALL_CASES, [f.name for f in FORMATS if not f.unavailable()])
    return out
