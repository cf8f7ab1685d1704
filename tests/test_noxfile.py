"""The noxfile's matrix: session ids, release selection from the command line, the environment
and pyproject.toml, tags, and the one release table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import noxfile_module

REPO = Path(__file__).resolve().parents[1]


def nox_list(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nox", "-l", "--json", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "CKPT_HARNESS_TORCH": "", **(env or {})}, timeout=120)


def sessions(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    result = nox_list(*args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_default_matrix_has_four_releases_both_devices_and_readable_ids() -> None:
    names = [s["session"] for s in sessions()]
    assert "produce(torch='2.5.1', device='cpu')" in names
    assert "consume(torch='1.13.1', device='cuda')" in names
    releases = {s["call_spec"]["torch"] for s in sessions() if s["name"] == "produce"}
    assert releases == {"1.13.1", "2.5.1", "2.6.0", "2.14.1"}


def test_torch_1_13_runs_on_python_3_10() -> None:
    (entry,) = [s for s in sessions() if s["session"] == "produce(torch='1.13.1', device='cpu')"]
    assert entry["python"] == "3.10"


def test_environment_variable_selects_releases() -> None:
    chosen = sessions(env={"CKPT_HARNESS_TORCH": "2.13.0,2.5.1"})
    assert {s["call_spec"]["torch"] for s in chosen if s["name"] == "consume"} == {"2.13.0", "2.5.1"}
    # 2.13.0 is a CPU-only build: no cuda session for it
    assert "produce(torch='2.13.0', device='cuda')" not in [s["session"] for s in chosen]


def test_command_line_wins_over_the_environment() -> None:
    chosen = sessions("--", "--torch", "2.6.0", env={"CKPT_HARNESS_TORCH": "2.5.1"})
    assert {s["call_spec"]["torch"] for s in chosen if s["name"] == "produce"} == {"2.6.0"}


def test_quick_tag_is_the_newest_selected_release_on_cpu() -> None:
    quick = sessions("-t", "quick", env={"CKPT_HARNESS_TORCH": "2.5.1,2.13.0"})
    assert {s["session"] for s in quick} == {"produce(torch='2.13.0', device='cpu')",
                                             "consume(torch='2.13.0', device='cpu')", "summary"}


def test_unknown_release_is_a_clear_error() -> None:
    result = nox_list(env={"CKPT_HARNESS_TORCH": "9.9.9"})
    assert result.returncode != 0
    assert "unknown torch release(s) ['9.9.9']" in result.stdout + result.stderr


def test_pyproject_table_selects_releases(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    (copy / "noxfile.py").write_text((REPO / "noxfile.py").read_text())
    for part in ("harness/releases.py", "harness/venvs.py", "harness/data/releases.toml"):  # what the noxfile loads
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        (copy / part).write_text((REPO / part).read_text())
    (copy / "pyproject.toml").write_text('[tool.harness]\ntorch = ["2.6.0"]\n')
    result = subprocess.run([sys.executable, "-m", "nox", "-l", "--json"], cwd=copy, capture_output=True, text=True,
                            env={**os.environ, "CKPT_HARNESS_TORCH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {s["call_spec"]["torch"] for s in json.loads(result.stdout) if s["name"] == "produce"} == {"2.6.0"}


@pytest.mark.parametrize("release", ["1.13.1", "2.5.1", "2.6.0"])
def test_corpus_sessions_exist_for_the_frozen_releases(release: str) -> None:
    assert f"corpus(torch='{release}')" in [s["session"] for s in sessions("-s", "corpus")]


@pytest.mark.parametrize("argv, backend_env, uv_on_path, expected", [
    (["nox"], "", True, True),                                   # uv where it is installed
    (["nox"], "", False, False),                                 # pip where it is not
    (["nox", "-db", "virtualenv"], "", True, False),            # a backend named on the command line wins
    (["nox", "--default-venv-backend=venv"], "", True, False),
    (["nox", "-db", "uv"], "", False, True),
    (["nox"], "virtualenv", True, False),                        # and so does NOX_DEFAULT_VENV_BACKEND
    (["nox", "--", "-db", "virtualenv"], "", True, True),        # posargs are the sessions', not nox's
])
def test_environments_are_built_with_uv_where_it_is_available(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              argv: list[str], backend_env: str, uv_on_path: bool,
                                                              expected: bool) -> None:
    noxfile = noxfile_module()
    if uv_on_path:
        (tmp_path / "uv").write_text("#!/bin/sh\n")
        (tmp_path / "uv").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("NOX_DEFAULT_VENV_BACKEND", backend_env)
    monkeypatch.setattr(sys, "argv", argv)
    assert noxfile._uses_uv() is expected
