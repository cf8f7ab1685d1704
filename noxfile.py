"""The matrix: produce and consume checkpoints across real PyTorch releases and devices.

One implementation (``_install``, ``_harness``), thin sessions that each say why they exist.
Plain ``nox`` runs every produce session, then every consume session, then the summary.

Which releases: ``nox -- --torch 2.5.1 --torch 2.13.0``, else ``CKPT_HARNESS_TORCH=2.5.1,2.13.0``,
else ``[tool.harness] torch = [...]`` in pyproject.toml, else DEFAULT_RELEASES.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parent
ARTIFACTS = ROOT / "artifacts"
RESULTS = ROOT / "results"

nox.options.sessions = ["produce", "consume", "summary"]
nox.options.reuse_venv = "yes"


@dataclass(frozen=True)
class Release:
    """A torch release and what must be installed beside it."""

    torch: str
    python: str
    torchvision: str | None = None
    pins: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu", "cuda")


#: The one table of releases: torch ↔ torchvision ↔ Python ↔ extra pins.
RELEASES = {
    "1.13.1": Release("1.13.1", "3.10", "0.14.1", pins=("numpy<2",)),
    "2.5.1": Release("2.5.1", "3.11", "0.20.1"),
    "2.6.0": Release("2.6.0", "3.11", "0.21.0"),
    "2.13.0": Release("2.13.0", "3.11", None, devices=("cpu",)),  # the CPU build on local disk; no torchvision
    "2.14.1": Release("2.14.1", "3.11", "0.29.1"),
}
NEWEST = "2.14.1"
DEFAULT_RELEASES = ("1.13.1", "2.5.1", "2.6.0", NEWEST)
TOOLS_RELEASE = "2.13.0"  # the light CPU-only build the tests and the summary run with


def _from_posargs() -> list[str]:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--torch"]


def _from_pyproject() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return list(tomllib.load(handle).get("tool", {}).get("harness", {}).get("torch", []))


def selected_releases() -> list[str]:
    """Releases from the command line, the environment, pyproject.toml or the defaults, in that order."""
    env = [r for r in os.environ.get("CKPT_HARNESS_TORCH", "").split(",") if r.strip()]
    chosen = _from_posargs() or env or _from_pyproject() or list(DEFAULT_RELEASES)
    unknown = [r for r in chosen if r not in RELEASES]
    if unknown:
        raise SystemExit(f"noxfile: unknown torch release(s) {unknown}; known: {sorted(RELEASES)} (RELEASES table)")
    return chosen


def _runs(executable: str | None) -> bool:
    """True when ``executable`` starts (a pyenv shim for a version not selected does not)."""
    if not executable:
        return False
    return subprocess.run([executable, "-c", "pass"], capture_output=True).returncode == 0


def _expose_pyenv(python: str) -> None:
    """Put a pyenv-installed ``python<X.Y>`` on PATH when no working one is there already."""
    if _runs(shutil.which(f"python{python}")):
        return
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", f"{python}.*", "bin", f"python{python}")))
    if found:
        os.environ["PATH"] = os.path.dirname(found[-1]) + os.pathsep + os.environ["PATH"]


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def _params() -> list:
    params = []
    chosen = selected_releases()
    newest = max(chosen, key=_version_key)
    for name in chosen:
        release = RELEASES[name]
        _expose_pyenv(release.python)
        for device in release.devices:
            tags = ["nightly"] + (["quick"] if name == newest and device == "cpu" else [])
            params.append(nox.param(release.python, name, device, id=f"torch='{name}', device='{device}'", tags=tags))
    return params


MATRIX = _params()


def _install(session: nox.Session, torch: str) -> None:
    """Install a release, its matched torchvision and pins, then the harness (which keeps that torch)."""
    release = RELEASES[torch]
    if not _runs(shutil.which(f"python{release.python}")):
        session.error(f"torch {torch} needs Python {release.python}: install it (pyenv install {release.python}) "
                      f"or put python{release.python} on PATH")
    packages = [f"torch=={torch}", *release.pins]
    if release.torchvision:
        packages.append(f"torchvision=={release.torchvision}")
    session.install(*packages)
    session.install("-e", ".[safetensors]")


def _matrix_env(session: nox.Session, torch: str, device: str) -> None:
    """Install ``torch`` for a matrix session; skip (not fail) a cuda session where there is no GPU."""
    if device == "cuda" and not shutil.which("nvidia-smi"):
        session.skip("device='cuda' needs a GPU: no NVIDIA driver on this machine")
    _install(session, torch)
    if device == "cuda":
        probe = "import torch; print('cuda-available' if torch.cuda.is_available() else 'no-cuda')"
        if "cuda-available" not in str(session.run("python", "-c", probe, silent=True)):
            session.skip("device='cuda' needs a GPU: torch.cuda.is_available() is False here")


def _env_label(torch: str, device: str) -> str:
    return f"torch-{torch}-{device}"


@nox.session
@nox.parametrize("python,torch,device", MATRIX)
def produce(session: nox.Session, torch: str, device: str) -> None:
    """Save every case in every format with this release, into the shared artifacts folder."""
    _matrix_env(session, torch, device)
    session.run("ckpt-harness", "produce", "--out", str(ARTIFACTS), "--device", device, "--replace")


@nox.session
@nox.parametrize("python,torch,device", MATRIX)
def consume(session: nox.Session, torch: str, device: str) -> None:
    """Load every artifact any release produced with this release, and check it."""
    _matrix_env(session, torch, device)
    RESULTS.mkdir(exist_ok=True)
    session.run("ckpt-harness", "consume", str(ARTIFACTS), "--device", device,
                "--results", str(RESULTS / f"{_env_label(torch, device)}.jsonl"), success_codes=[0, 1])


CORPUS = ROOT / "cases" / "corpus"
CORPUS_RELEASES = ("1.13.1", "2.5.1", "2.6.0")


@nox.session
@nox.parametrize("python,torch", [nox.param(RELEASES[r].python, r, id=f"torch='{r}'") for r in CORPUS_RELEASES])
def corpus(session: nox.Session, torch: str) -> None:
    """Regenerate one release's frozen corpus (small cases only), committed under cases/corpus/<release>/."""
    _expose_pyenv(RELEASES[torch].python)
    _install(session, torch)
    session.run("ckpt-harness", "produce", "--corpus", "--out", str(CORPUS / torch), "--replace")


@nox.session(python="3.11", tags=["quick", "nightly"])
def summary(session: nox.Session) -> None:
    """Print the producer × consumer grid of every consume session's records; fail on unexpected results."""
    _install(session, TOOLS_RELEASE)
    files = sorted(str(p) for p in RESULTS.glob("*.jsonl"))
    if not files:
        session.error("no results/*.jsonl: run the consume sessions first (plain `nox` does)")
    session.run("ckpt-harness", "summary", *files)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The test suite, with the CPU build of the newest CPU-only release."""
    _install(session, TOOLS_RELEASE)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
