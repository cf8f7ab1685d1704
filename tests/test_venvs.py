"""harness/venvs.py: the one implementation of per-release environments, used by the noxfile's ReleaseEnv
and by ``check --torch`` (harness.checkfile.envs). Commands are recorded here, not run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import venvs
from harness.checkfile import envs
from tests.conftest import noxfile_module

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str]) -> None:
        self.commands.append(command)


def test_install_runs_only_what_the_stamp_lacks_and_rekeys_editables(tmp_path: Path) -> None:
    project, env = tmp_path / "project", tmp_path / "env"
    project.mkdir()
    env.mkdir()  # made by create(), which the recorder does not run
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    run = Recorder()
    assert venvs.install(env, ["torch==2.5.1", "-e .[test]"], run, project=project) == ["torch==2.5.1", "-e .[test]"]
    assert run.commands == [[str(env / "bin" / "python"), "-m", "pip", "install", "torch==2.5.1", "-e", ".[test]"]]
    assert venvs.install(env, ["torch==2.5.1", "-e .[test]"], run, project=project) == []
    assert len(run.commands) == 1, "a second install of the same requirements ran pip"
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    assert venvs.install(env, ["torch==2.5.1", "-e .[test]"], run, uv=True, project=project) == ["-e .[test]"]
    assert run.commands[-1] == ["uv", "pip", "install", "--compile-bytecode", "--python", str(env / "bin" / "python"),
                               "-e", ".[test]"]


def test_a_failed_install_leaves_no_stamp(tmp_path: Path) -> None:
    def fails(command: list[str]) -> None:
        raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError):
        venvs.install(tmp_path, ["torch==2.5.1"], fails)
    assert venvs.installed(tmp_path) == set()


def test_create_is_skipped_where_the_environment_exists(tmp_path: Path) -> None:
    run = Recorder()
    assert venvs.create(tmp_path / "env", "python3.11", run)
    assert run.commands == [["python3.11", "-m", "venv", str(tmp_path / "env")]]
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").write_text("")
    assert not venvs.create(tmp_path / "env", "python3.11", run, uv=True) and len(run.commands) == 1


def test_find_python_finds_this_interpreters_version() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = venvs.find_python(version)
    assert found is not None and venvs.runs(found)
    assert venvs.find_python("2.1") is None and not venvs.runs(None)


def test_check_reuses_only_finished_environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPT_HARNESS_ENVS", str(tmp_path))
    monkeypatch.setattr(envs, "REPO", tmp_path / "no-checkout")
    env = tmp_path / "torch-2.5.1"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    assert envs.find("2.5.1") is None, "an interrupted build (no stamp) was reused"
    (env / venvs.STAMP).write_text("[]")
    assert envs.find("2.5.1") == env / "bin" / "python"


def test_the_noxfile_builds_release_environments_with_the_same_module() -> None:
    noxfile = noxfile_module()
    assert Path(noxfile.VENVS.__file__).resolve() == Path(venvs.__file__).resolve()
    assert noxfile.VENVS.STAMP == venvs.STAMP


def test_uv_seeds_pip_as_venv_does(tmp_path: Path) -> None:
    run = Recorder()
    assert venvs.create(tmp_path / "env", "python3.11", run, uv=True)
    assert run.commands == [["uv", "venv", "--seed", "--python", "python3.11", str(tmp_path / "env")]]


PIP_CONFIG = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/elsewhere'
user.index-url='https://mirror.example/simple'
"""


def _python_printing(tmp_path: Path, text: str) -> str:
    """A stand-in ``python`` whose ``-m pip config list`` prints ``text``."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{text}END\n")
    script.chmod(0o755)
    return str(script)


def test_uv_gets_the_package_sources_pip_is_configured_with(tmp_path: Path) -> None:
    flags = venvs.pip_sources(_python_printing(tmp_path, PIP_CONFIG))
    assert flags == ["--constraint", "/etc/xdg/pip/constraints.txt",
                     "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
                     "--find-links", "/opt/wheels",  # the environment variable wins over the config file
                     "--index-url", "https://mirror.example/simple",
                     "--index-strategy", "unsafe-best-match"]


def test_uv_installs_from_pips_sources(tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    _python_printing(env / "bin", ":env:.find-links='/opt/wheels'\n")
    run = Recorder()
    venvs.install(env, ["torch==2.13.0"], run, uv=True)
    assert run.commands == [["uv", "pip", "install", "--compile-bytecode", "--python", str(env / "bin" / "python"),
                             "--find-links", "/opt/wheels", "torch==2.13.0"]]


def test_uv_keeps_its_defaults_without_pip(tmp_path: Path) -> None:
    assert venvs.pip_sources(str(tmp_path / "no-python")) == []
    assert venvs.pip_sources(_python_printing(tmp_path, "global.cert='/x'\n")) == []
