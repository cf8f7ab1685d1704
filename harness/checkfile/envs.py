"""Find or build the environment of a torch release for ``ckpt-harness check --torch``.

Reused first: the matrix's shared environments (``.nox/releases/torch-<release>`` of the harness's
own checkout, built by the noxfile's ``ReleaseEnv``), then earlier ``check`` environments under
``$CKPT_HARNESS_ENVS`` or ``~/.cache/checkpoint-harness/envs``. Never the current directory: an
interpreter found there would be whatever the folder one happens to stand in planted. Otherwise one
is built there from the one release table (:mod:`harness.releases`): a venv with the release's Python,
then torch, its pins and safetensors. A stamp file marks a finished build, so an interrupted one is completed next time.
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

from harness import releases
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[2]
STAMP = "harness-check.json"


def cache_root() -> Path:
    """Where ``check`` keeps the environments it builds."""
    return Path(os.environ.get("CKPT_HARNESS_ENVS") or Path.home() / ".cache" / "checkpoint-harness" / "envs")


def candidates(release: str) -> list[Path]:
    """Environment folders tried for ``release``, in order (the harness's own checkout, then the cache; never cwd)."""
    name = f"torch-{release}"
    return [REPO / ".nox" / "releases" / name, cache_root() / name]


def interpreter(env: Path) -> Path:
    return env / "bin" / "python"


def find(release: str) -> Optional[Path]:
    """The interpreter of an existing environment for ``release``, or None."""
    for env in candidates(release):
        python = interpreter(env)
        built_by_nox = (env / "harness-installed.json").exists()
        if python.exists() and (built_by_nox or (env / STAMP).exists()):
            return python
    return None


def ensure(release: str, log: Callable[[str], None], extra: Sequence[str] = ()) -> Path:
    """The interpreter for ``release``: reused when present, else built (minutes; several GB).

    ``extra`` requirements (a project's own dependencies, ``upgrade``'s config) get an environment
    of their own, named by the release and a hash of the list.
    """
    found = None if extra else find(release)
    if found:
        return found
    wanted = releases.get(release)
    suffix = "-" + hashlib.sha256("\n".join(sorted(extra)).encode()).hexdigest()[:10] if extra else ""
    env = cache_root() / f"torch-{release}{suffix}"
    if extra and (env / STAMP).exists() and interpreter(env).exists():
        return interpreter(env)
    base = _python(wanted.python)
    log(f"building an environment for torch {release} in {env} (Python {wanted.python}; this takes minutes)")
    env.parent.mkdir(parents=True, exist_ok=True)
    logfile = env.parent / f"torch-{release}.log"
    with open(logfile, "w") as out:
        steps = [[base, "-m", "venv", str(env)],
                 [str(interpreter(env)), "-m", "pip", "install", *wanted.requirements(), "safetensors", *extra]]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise HarnessError(f"could not build the torch {release} environment: see {logfile}")
    (env / STAMP).write_text(json.dumps({"release": release, "requirements": [*wanted.requirements(), *extra]}))
    return interpreter(env)


def _python(version: str) -> str:
    """A working ``python<version>``: on PATH or installed by pyenv."""
    candidates_ = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates_ += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    for python in filter(None, candidates_):
        if subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0:
            return python
    raise HarnessError(f"this torch release needs Python {version}: install it (pyenv install {version}) "
                       f"or put python{version} on PATH")
