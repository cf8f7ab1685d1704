"""The matrix: produce and consume checkpoints across real PyTorch releases and devices.

One implementation (``ReleaseEnv``: one shared environment per torch release), thin sessions that each
say why they exist.
Plain ``nox`` runs every produce session, then every consume session, then the summary.

Which releases: ``nox -- --torch 2.5.1 --torch 2.13.0``, else ``CKPT_HARNESS_TORCH=2.5.1,2.13.0``,
else ``[tool.harness] torch = [...]`` in pyproject.toml, else DEFAULT_RELEASES.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
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


def _load_harness_module(name: str):
    """A standard-library-only harness module, by path (neither torch nor the harness imports here)."""
    spec = importlib.util.spec_from_file_location(f"_harness_{name}", ROOT / "harness" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def _load_releases() -> tuple[dict, dict]:
    """The one release table, harness/data/releases.toml (also read by ``harness.releases``)."""
    module = _load_harness_module("releases")
    return module.RELEASES, module.load_table()


RELEASES, _TABLE = _load_releases()
#: per-release virtual environments: the one implementation, shared with ``check --torch`` (harness/venvs.py)
VENVS = _load_harness_module("venvs")
DEFAULT_RELEASES = tuple(_TABLE["default"])
TOOLS_RELEASE = _TABLE["tools"]  # the light CPU-only build the tests and the summary run with


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


def _expose_pyenv(python: str) -> None:
    """Put a pyenv-installed ``python<X.Y>`` on PATH when no working one is there already."""
    if VENVS.runs(shutil.which(f"python{python}")):
        return
    found = VENVS.find_python(python)
    if found:
        os.environ["PATH"] = os.path.dirname(found) + os.pathsep + os.environ["PATH"]


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


ENVS = ROOT / ".nox" / "releases"


def _uses_uv() -> bool:
    """Build the release environments with uv where it is on PATH, unless nox was told another backend
    (``-db virtualenv``, ``--default-venv-backend venv``, NOX_DEFAULT_VENV_BACKEND); ``-db uv`` asks for it."""
    argv = sys.argv[: sys.argv.index("--")] if "--" in sys.argv else sys.argv
    flags = {"-db", "--default-venv-backend"}
    chosen = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in flags]
    chosen += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--default-venv-backend=")]
    backend = chosen[-1] if chosen else os.environ.get("NOX_DEFAULT_VENV_BACKEND", "")
    return backend == "uv" or (not backend and shutil.which("uv") is not None)


class ReleaseEnv:
    """One virtualenv per torch release, shared by every session that needs that release.

    A release's environment is 1–5 GB, so produce, consume, corpus, tests and the tools sessions
    share ``.nox/releases/torch-<release>`` instead of each building its own. What was installed
    is stamped in the environment; a later session installs only what is missing (``nox -R``
    therefore installs nothing twice). The harness is installed editable, so code changes need no
    reinstall; a change to pyproject.toml does reinstall it. Creating and installing is
    harness/venvs.py's (:data:`VENVS`), which ``check --torch`` builds its environments with too.
    """

    def __init__(self, session: nox.Session, torch: str, extras: str = "safetensors,onnx") -> None:
        self.session = session
        self.release = RELEASES[torch]
        self.path = ENVS / f"torch-{torch}"
        self.bin = self.path / "bin"
        self._create()
        self._install(self.release.requirements() + [f"-e .[{extras}]"])

    def _interpreter(self) -> str:
        python = VENVS.find_python(self.release.python)
        if python is None:
            self.session.error(f"torch {self.release.torch} needs Python {self.release.python}: install it "
                               f"(pyenv install {self.release.python}) or put python{self.release.python} on PATH")
        return python

    def _create(self) -> None:
        if not VENVS.interpreter(self.path).exists():
            VENVS.create(self.path, self._interpreter(), self._run, uv=_uses_uv())

    def _run(self, command: list[str]) -> object:
        return self.session.run(*command, external=True)

    def _install(self, wanted: list[str]) -> None:
        if not VENVS.install(self.path, wanted, self._run, uv=_uses_uv(), project=ROOT):
            self.session.log(f"{self.path.name}: everything already installed")

    def install(self, *requirements: str) -> None:
        """Install more into this release's environment (e.g. ``-e .[test]``), once."""
        self._install(list(requirements))

    def run(self, *args: str, **kwargs) -> object:
        """Run a command with this environment's bin first on PATH."""
        env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(self.path),
               **kwargs.pop("env", {})}
        # nox looks the program up on its own PATH, not on ``env``'s: name this environment's copy,
        # or a nox started from another release's activated venv runs that release's command.
        own = self.bin / args[0]
        program = str(own) if own.exists() else args[0]
        return self.session.run(program, *args[1:], env=env, external=True, **kwargs)


def _matrix_env(session: nox.Session, torch: str, device: str) -> ReleaseEnv:
    """This release's environment for a matrix session; skip (not fail) a cuda session without a GPU."""
    if device == "cuda" and not shutil.which("nvidia-smi"):
        session.skip("device='cuda' needs a GPU: no NVIDIA driver on this machine")
    env = ReleaseEnv(session, torch)
    if device == "cuda":
        probe = "import torch; print('cuda-available' if torch.cuda.is_available() else 'no-cuda')"
        if "cuda-available" not in str(env.run("python", "-c", probe, silent=True)):
            session.skip("device='cuda' needs a GPU: torch.cuda.is_available() is False here")
    return env


def _env_label(torch: str, device: str) -> str:
    return f"torch-{torch}-{device}"


# Sessions build no virtualenv of their own (venv_backend="none"): each uses its release's
# shared ReleaseEnv. ``python`` is kept in the parametrization so `nox -l` shows the interpreter.
matrix_session = nox.session(venv_backend="none")


@matrix_session
@nox.parametrize("python,torch,device", MATRIX)
def produce(session: nox.Session, torch: str, device: str) -> None:
    """Save every case in every format with this release, into the shared artifacts folder."""
    env = _matrix_env(session, torch, device)
    env.run("ckpt-harness", "produce", "--out", str(ARTIFACTS), "--device", device, "--replace")


@matrix_session
@nox.parametrize("python,torch,device", MATRIX)
def consume(session: nox.Session, torch: str, device: str) -> None:
    """Load every artifact any release produced with this release, and check it."""
    env = _matrix_env(session, torch, device)
    RESULTS.mkdir(exist_ok=True)
    env.run("ckpt-harness", "consume", str(ARTIFACTS), "--device", device,
            "--results", str(RESULTS / f"{_env_label(torch, device)}.jsonl"), success_codes=[0, 1])
    env.run("ckpt-harness", "canary", "--results", str(RESULTS / f"canary-{_env_label(torch, device)}.jsonl"),
            success_codes=[0, 1])


CORPUS = ROOT / "cases" / "corpus"
CORPUS_RELEASES = tuple(_TABLE["corpus"])


@matrix_session
@nox.parametrize("python,torch", [nox.param(RELEASES[r].python, r, id=f"torch='{r}'") for r in CORPUS_RELEASES])
def corpus(session: nox.Session, torch: str) -> None:
    """Regenerate one release's frozen corpus (small cases only), committed under cases/corpus/<release>/."""
    ReleaseEnv(session, torch).run("ckpt-harness", "produce", "--corpus", "--out", str(CORPUS / torch), "--replace")


@nox.session(python="3.11", venv_backend="none", tags=["quick", "nightly"])
def summary(session: nox.Session) -> None:
    """Print the producer × consumer grid of every consume session's records; fail on unexpected results."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    files = sorted(str(p) for p in RESULTS.glob("*.jsonl"))
    if not files:
        session.error("no results/*.jsonl: run the consume sessions first (plain `nox` does)")
    env.install("-e .[report]")
    env.run("ckpt-harness", "report", *files, "--out", str(ROOT / "reports"), success_codes=[0, 1])
    env.run("ckpt-harness", "summary", *files)


@nox.session(python="3.11", venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite, with the CPU build of the newest CPU-only release: the fast tier (in process),
    then the slow one (the CLI in subprocesses, other releases). ``nox -s tests -- ARGS`` runs ``pytest ARGS``.
    pytest's exit 5 (no test collected) fails the session like any other non-zero exit."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[test]")
    if session.posargs:
        env.run("pytest", *session.posargs)
        return
    env.run("pytest", "-m", "not slow")
    env.run("pytest", "-m", "slow")


UPGRADE_RELEASES = ("2.5.1", "2.13.0")


@nox.session(python="3.11", venv_backend="none")
def upgrade_e2e(session: nox.Session) -> None:
    """``ckpt-harness upgrade`` 2.5.1 → 2.13.0 end to end on tests/userproject (every printed fix re-applied in
    2.13.0), the worker's isolation in 2.5.1, and every breaks-catalog reproducer in both releases: the slow
    tests of tests/test_upgrade.py and tests/test_breaks.py with both release environments present (built here
    when missing; CI runs it after the matrix has built them). A test that would skip for a missing environment
    fails instead (``CKPT_HARNESS_REQUIRE_RELEASES``), and so does a run where no test ran."""
    for release in UPGRADE_RELEASES:
        ReleaseEnv(session, release)
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[test]")
    env.run("pytest", "-p", "no:cacheprovider", "-m", "slow", "-rs", "tests/test_upgrade.py", "tests/test_breaks.py",
            *session.posargs, env={"CKPT_HARNESS_REQUIRE_RELEASES": ",".join(UPGRADE_RELEASES)})


@nox.session(python="3.11", venv_backend="none")
def tests_fast(session: nox.Session) -> None:
    """The fast tier alone (``pytest -m "not slow"``, in process, about a minute): the edit-test loop."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[test]")
    env.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(python="3.11", venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (style, imports, likely bugs) and mypy over harness/, as configured in pyproject.toml."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[lint]")
    env.run("ruff", "check", ".")
    env.run("mypy")


@nox.session(python="3.11", venv_backend="none")
def tests_vision(session: nox.Session) -> None:
    """The torchvision-dependent tests (vgg16/resnet18 cases and their partial-load scenarios), in the
    newest selected release that pins a torchvision (the tools release of ``tests`` cannot import it); a
    test skipped there for a missing torchvision fails (``CKPT_HARNESS_REQUIRE_TORCHVISION``)."""
    chosen = selected_releases()
    with_vision = [r for r in chosen if RELEASES[r].torchvision]
    if not with_vision:
        session.error(f"no selected release pins a torchvision ({chosen}): select one, "
                      f"e.g. --torch {max((r for r in RELEASES if RELEASES[r].torchvision), key=_version_key)}")
    env = ReleaseEnv(session, max(with_vision, key=_version_key))
    env.install("-e .[test]")
    env.run("pytest", "-p", "no:cacheprovider", "-k", "vgg16 or resnet18 or torchvision or vision", *session.posargs,
            env={"CKPT_HARNESS_REQUIRE_TORCHVISION": "1"})


@nox.session(python="3.11", venv_backend="none")
def mutants(session: nox.Session) -> None:
    """Mutation testing of the judges (harness/checks, harness/partial, fingerprint.py, expectations.py):
    mutmut runs the fast in-process tests against each mutant ([tool.mutmut] in pyproject.toml); fails
    under 90 % killed or on a survivor not explained in tests/mutants-equivalent.txt.
    ``nox -s mutants -- 'harness.checks.sharing*'`` runs the mutants of one module."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[test,mutation]")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    artifacts = ROOT / ".nox" / "mutants-artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    # one thread per worker (torch's pools and fork do not mix); the fast tests' artifacts written once
    run_env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CKPT_HARNESS_FAST_ARTIFACTS": str(artifacts)}
    env.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_checks_fast.py", "-k", "cover_every_broken",
            env=run_env)
    env.run("mutmut", "run", "--max-children", str(os.cpu_count() or 2), *session.posargs, env=run_env)
    env.run("python", "tests/mutants_gate.py", "--min-score", "90")


@nox.session(python="3.11", venv_backend="none")
def fuzz(session: nox.Session) -> None:
    """Hypothesis round trips of generated models through every format, then damaged copies of real
    artifacts through every loader. Profile: ``nox -s fuzz -- ci`` (default nightly; dev is fastest)."""
    profile = session.posargs[0] if session.posargs else "nightly"
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[test]")
    env.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py", env={"HYPOTHESIS_PROFILE": profile})
    folder = ROOT / ".nox" / "fuzz-artifacts"
    env.run("ckpt-harness", "produce", "--corpus", "--out", str(folder), "--replace")
    corrupt_profile = "ci" if profile == "dev" else profile
    env.run("ckpt-harness", "corrupt", str(folder), "--profile", corrupt_profile,
            "--results", str(RESULTS / "corrupt" / f"{corrupt_profile}.jsonl"))


BENCH_RESULTS = RESULTS / "bench"


def _bench_args(posargs: list[str]) -> list[str]:
    """``nox -s bench -- ARGS``: ARGS for ``ckpt-harness bench``, less the ``--torch X`` pairs that pick releases."""
    args: list[str] = []
    skip = False
    for arg in posargs:
        if not skip and arg != "--torch":
            args.append(arg)
        skip = arg == "--torch" and not skip
    return args


@matrix_session
@nox.parametrize("python,torch", [nox.param(*p.args[:2], id=f"torch='{p.args[1]}'") for p in MATRIX
                                  if p.args[2] == "cpu"])
def bench(session: nox.Session, torch: str) -> None:
    """Save/load benchmarks of every format with this release, on the CPU (not in plain `nox`): results/bench/.

    ``nox -s bench -- --sizes 64MB --cache warm,cold`` passes options on to ``ckpt-harness bench``.
    """
    env = ReleaseEnv(session, torch)
    env.install("-e .[bench]")
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    env.run("ckpt-harness", "bench", "--json", str(BENCH_RESULTS / f"{_env_label(torch, 'cpu')}.json"),
            "--plot", str(ROOT / "reports" / "bench"), *_bench_args(session.posargs))


@nox.session(python="3.11", venv_backend="none")
def bench_compare(session: nox.Session) -> None:
    """The regression gate between releases (not in plain `nox`): each pair of consecutive CPU releases of
    the matrix, their benchmark workers taking turns round by round in the same time window beside an
    identical rerun of the older one, gated only beyond that A/A floor (``bench-compare --interleave``):
    results/bench/compare-<old>-<new>.json. ``nox -s bench_compare -- --sizes 256MB`` passes options on;
    ``nox -s bench_compare -- OLD.json NEW.json`` compares two saved ``bench`` runs instead. Redraws
    reports/bench/ from results/bench/torch-*-cpu.json where there are two or more."""
    env = ReleaseEnv(session, TOOLS_RELEASE)
    env.install("-e .[bench]")
    named = [a for a in session.posargs if a.endswith(".json")]
    saved = named or sorted((str(p) for p in BENCH_RESULTS.glob("torch-*-cpu.json")),
                            key=lambda p: _version_key(Path(p).name.split("-")[1].split("+")[0]))
    if len(saved) >= 2:
        env.run("ckpt-harness", "bench-plot", *saved, "--out", str(ROOT / "reports" / "bench"))
    if named:
        for old, new in zip(named, named[1:], strict=False):
            env.run("ckpt-harness", "bench-compare", old, new)
        return
    releases = sorted({p.args[1] for p in MATRIX if p.args[2] == "cpu"}, key=_version_key)
    if len(releases) < 2:
        session.error("bench_compare needs two releases: CKPT_HARNESS_TORCH=2.5.1,2.6.0 nox -s bench_compare")
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    for old, new in zip(releases, releases[1:], strict=False):
        pythons = [str(ReleaseEnv(session, release).bin / "python") for release in (old, new)]
        env.run("ckpt-harness", "bench-compare", "--interleave", *pythons,
                "--json", str(BENCH_RESULTS / f"compare-{old}-{new}.json"), *_bench_args(session.posargs))
