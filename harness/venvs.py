"""Per-release virtual environments: the one implementation behind the noxfile's ``ReleaseEnv`` (the
matrix's shared ``.nox/releases/torch-<release>``) and ``check --torch``'s environments
(:mod:`harness.checkfile.envs`).

Standard library only: the noxfile loads this module by path, where neither torch nor the harness is
importable. The caller runs the commands (``run``: nox's ``session.run``, or a subprocess logging to
a file) and says what to install; this module finds the release's Python, creates the environment
and installs what is not installed yet. What was installed is stamped in the environment
(:data:`STAMP`, written after a successful install): an interrupted build is completed next time,
and nothing is installed twice. An editable install (``-e .[extras]``) is keyed by a digest of
the project's ``pyproject.toml``, so a change to it reinstalls the harness.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

#: the list of installed requirements, written after each successful install
STAMP = "harness-installed.json"

#: runs one command; raises (or ends the session) when it fails
Runner = Callable[[list[str]], object]


def runs(executable: Optional[str]) -> bool:
    """True when ``executable`` starts (a pyenv shim for a version not selected does not)."""
    if not executable:
        return False
    return subprocess.run([executable, "-c", "pass"], capture_output=True).returncode == 0


def find_python(version: str) -> Optional[str]:
    """A working ``python<version>``: on PATH, else one installed by pyenv (newest patch release); or None."""
    found = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")),
                    reverse=True)
    return next((python for python in found if runs(python)), None)


def interpreter(env: Path) -> Path:
    """The environment's ``bin/python``."""
    return Path(env) / "bin" / "python"


def installed(env: Path) -> set[str]:
    """The requirements the stamp says are installed (keyed; see :func:`keys`)."""
    stamp = Path(env) / STAMP
    return set(json.loads(stamp.read_text())) if stamp.exists() else set()


def keys(wanted: Sequence[str], project: Optional[Path] = None) -> list[str]:
    """Stamp keys: an editable install carries a digest of ``project``/pyproject.toml, anything else is itself."""
    if project is None:
        return list(wanted)
    digest = hashlib.sha256((Path(project) / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return [f"{w} #{digest}" if w.startswith("-e ") else w for w in wanted]


def create(env: Path, python: str, run: Runner, uv: bool = False) -> bool:
    """Create the virtual environment with ``python`` unless it exists; True when it was created."""
    if interpreter(env).exists():
        return False
    # --seed: pip too, as ``python -m venv`` gives it (the tests build a wheel with the env's pip)
    run(["uv", "venv", "--seed", "--python", python, str(env)] if uv else [python, "-m", "venv", str(env)])
    return True


#: pip options that say where packages come from, and uv's flag for each (uv reads no pip configuration)
_PIP_SOURCES = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
                "constraint": "--constraint"}
#: pip's configuration sources, highest precedence first (``pip config list`` names them so)
_PIP_SCOPES = (":env:", "site", "user", "install", "global")


def pip_sources(python: str) -> list[str]:
    """uv flags for the package sources pip is configured with (``pip config list`` under ``python``):
    a local wheel folder, extra indexes and constraints that ``pip install`` would use, so uv installs
    the same builds pip would (without them uv takes PyPI's CUDA torch for a local CPU-only wheel)."""
    try:
        listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []  # no pip to ask: uv's own defaults
    chosen: dict[str, tuple[int, str]] = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        scope, _, option = key.rpartition(".")
        if option not in _PIP_SOURCES or scope not in _PIP_SCOPES:
            continue
        rank = _PIP_SCOPES.index(scope)
        if option not in chosen or rank < chosen[option][0]:
            chosen[option] = (rank, value.strip().strip("'\""))
    flags = [arg for option, (_, value) in sorted(chosen.items()) for item in value.split()
             for arg in (_PIP_SOURCES[option], item)]
    if "--extra-index-url" in flags:
        # pip picks the best version over every index; uv by default stops at the first index with the name
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags


def install(env: Path, wanted: Sequence[str], run: Runner, uv: bool = False,
            project: Optional[Path] = None) -> list[str]:
    """Install the requirements of ``wanted`` the stamp does not list yet, in one call; return them.

    ``wanted`` items are pip arguments (``torch==2.5.1``, ``-e .[test]``); ``project`` is the folder an
    editable install refers to (its pyproject.toml keys the stamp)."""
    have = installed(env)
    keyed = keys(wanted, project)
    missing = [w for w, key in zip(wanted, keyed) if key not in have]  # noqa: B905 - keys() keeps the length
    if not missing:
        return []
    args = [a for w in missing for a in w.split(" ", 1)]
    python = str(interpreter(env))
    # uv writes no bytecode unless asked (pip does); where PYTHONDONTWRITEBYTECODE is set, every harness process
    # would compile torch's rarely imported modules (DCP, onnx, dynamo) from source again
    if uv:
        run(["uv", "pip", "install", "--compile-bytecode", "--python", python, *pip_sources(python), *args])
    else:
        run([python, "-m", "pip", "install", *args])
    (Path(env) / STAMP).write_text(json.dumps(sorted(have | set(keyed)), indent=1))
    return missing
