"""What makes consume fast without changing a verdict: OpenMP threads that sleep instead of spinning
(harness.omp) and partial-load targets restored in place instead of rebuilt (harness.partial.targets)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import cli, omp
from tests.conftest import REPO


def test_wait_passively_sets_the_policy_before_torch_is_imported() -> None:
    environ: dict[str, str] = {}
    assert omp.wait_passively(environ, modules={}) is True
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_wait_passively_keeps_the_users_choice() -> None:
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert omp.wait_passively(environ, modules={}) is False
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_wait_passively_does_nothing_once_torch_is_imported() -> None:
    environ: dict[str, str] = {}
    assert omp.wait_passively(environ, modules={"torch": object()}) is False
    assert environ == {}


class _Stop(Exception):
    """Ends a command line run where the test has seen enough."""


def test_the_command_line_asks_for_passive_waiting_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def build_parser() -> None:
        calls.append("build_parser")
        raise _Stop

    monkeypatch.setattr(cli, "wait_passively", lambda: calls.append("wait_passively") or True)
    monkeypatch.setattr(cli, "build_parser", build_parser)
    with pytest.raises(_Stop):
        cli.main(["list"])
    assert calls == ["wait_passively", "build_parser"]


@pytest.mark.slow
def test_a_command_runs_torch_with_passive_waiting() -> None:
    """In a fresh interpreter, the policy is in the environment before the command imports torch."""
    probe = ("import os, sys; from harness import cli; "
             "status = cli.main(['list']); print(status, os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 PASSIVE True"
