"""Find or build the environment of a torch release for ``ckpt-harness check --torch``.

Reused first: the matrix's shared environments (``.nox/releases/torch-<release>`` of the harness's
own checkout, built by the noxfile's ``ReleaseEnv``), then earlier ``check`` environments under
``$CKPT_HARNESS_ENVS`` or ``~/.cache/checkpoint-harness/envs``. Never the current directory: an
interpreter found there would be whatever the folder one happens to stand in planted. Otherwise one
is built there from the one release table (:mod:`harness.releases`) by :mod:`harness.venvs`, the
implementation the noxfile's ``ReleaseEnv`` uses too: a venv with the release's Python, then torch,
its pins and safetensors. The stamp written after the install marks a finished build, so an
interrupted one is completed next time.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness import releases, venvs
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[2]
#: the stamp of environments built before :mod:`harness.venvs` (still accepted as a finished build)
OLD_STAMP = "harness-check.json"


def cache_root() -> Path:
    """Where ``check`` keeps the environments it builds."""
    return Path(os.environ.get("CKPT_HARNESS_ENVS") or Path.home() / ".cache" / "checkpoint-harness" / "envs")


def candidates(release: str) -> list[Path]:
    """Environment folders tried for ``release``, in order (the harness's own checkout, then the cache; never cwd)."""
    name = f"torch-{release}"
    return [REPO / ".nox" / "releases" / name, cache_root() / name]


def finished(env: Path) -> bool:
    """The environment exists and its build ran to the end (its stamp is written)."""
    return venvs.interpreter(env).exists() and any((env / s).exists() for s in (venvs.STAMP, OLD_STAMP))


def find(release: str) -> Optional[Path]:
    """The interpreter of an existing environment for ``release``, or None."""
    return next((venvs.interpreter(env) for env in candidates(release) if finished(env)), None)


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
    if extra and finished(env):
        return venvs.interpreter(env)
    base = venvs.find_python(wanted.python)
    if base is None:
        raise HarnessError(f"this torch release needs Python {wanted.python}: install it (pyenv install "
                           f"{wanted.python}) or put python{wanted.python} on PATH")
    log(f"building an environment for torch {release} in {env} (Python {wanted.python}; this takes minutes)")
    env.parent.mkdir(parents=True, exist_ok=True)
    logfile = env.parent / f"torch-{release}.log"
    with open(logfile, "w") as out:
        def run(command: list[str]) -> None:
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise HarnessError(f"could not build the torch {release} environment: see {logfile}")

        venvs.create(env, base, run)
        venvs.install(env, [*wanted.requirements(), "safetensors", *extra], run)
    return venvs.interpreter(env)
