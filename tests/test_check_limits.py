"""``check --torch``'s worker cannot hang us or eat the machine: a deadline and a memory cap.

A file whose load does not finish fails as "did not finish" and the files after it are "not
tried", saying which file stopped the worker; a load that needs more memory than the cap fails
with a MemoryError while a small file in the same run still loads. The launcher's deadline and the
answer-padding are also tested in process, without a release.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.checkfile import _stopped, default_memory_mb, launch
from harness.inspect import inspect_file
from tests.conftest import run_cli

DEV_RELEASE = "2.13.0"

SLOW_USER = """
import time

class Slow:
    def __init__(self):
        self.n = 1  # a state to restore: unpickling calls __setstate__

    def __setstate__(self, state):
        time.sleep(600)
"""


def check(*args: str) -> tuple[int, dict[str, dict]]:
    done = run_cli("check", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, {Path(r["path"]).name: r["verdicts"][DEV_RELEASE] for r in reports}


def _stream(tmp_path: Path, source: str, seconds: float) -> tuple[str, object, list[str]]:
    """Run ``source`` as a worker through the launcher: (its stderr, the budget it ran past, its stdout lines)."""
    script = tmp_path / "worker.py"
    script.write_text(source)
    seen: list[str] = []
    stderr, stopped = launch.stream(Path(sys.executable), script, tmp_path / "request.json", tmp_path, seconds,
                                    seen.append)
    return stderr, stopped, seen


def test_the_launcher_kills_a_worker_past_its_deadline(tmp_path: Path) -> None:
    stderr, stopped, seen = _stream(tmp_path, "import sys, time\nprint('loading 1', flush=True)\ntime.sleep(600)\n",
                                    3.0)
    assert stopped == 3.0 and seen == ["loading 1\n"]


def test_the_launcher_reports_no_deadline_for_a_worker_that_ends(tmp_path: Path) -> None:
    stderr, stopped, seen = _stream(tmp_path, "import sys\nprint('progress 1', flush=True)\nsys.stderr.write('done')\n",
                                    60.0)
    assert (stopped, seen, stderr) == (None, ["progress 1\n"], "done")


def test_the_launcher_isolates_the_worker(tmp_path: Path) -> None:
    command = launch.command(Path("/env/bin/python"), tmp_path / "w.py", tmp_path / "r.json")
    assert command[:3] == ["/env/bin/python", "-I", "-X"] and command[3].startswith("pycache_prefix=")
    assert not any(key.startswith("PYTHON") and key != "PYTHONWARNINGS" for key in launch.environment())


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("stopped")
    paths = [folder / "first.pt", folder / "second.pt", folder / "third.pt"]
    for path in paths:
        torch.save({"w": torch.zeros(2)}, path)
    return [inspect_file(p) for p in paths]


def test_a_stopped_worker_fails_the_file_it_was_loading_and_skips_the_rest(two_files: list) -> None:
    done = [{"environment": {"torch": "2.13.0"}, "notes": []},
            {"loads": {"weights_only": {"status": "pass", "message": "", "warnings": []}}}]
    environment, results = _stopped("2.13.0", done, two_files, loading=2, seconds=20)
    assert environment["torch"] == "2.13.0" and len(results) == 3
    assert results[0]["loads"]["weights_only"]["status"] == "pass", "a file done before the deadline keeps its result"
    assert results[1]["loads"]["deadline"] == {
        "status": "fail", "message": "did not finish within the worker's budget of 20 s (--load-seconds)",
        "warnings": []}
    assert results[2]["loads"]["deadline"]["status"] == "skip"
    assert results[2]["loads"]["deadline"]["message"] == (
        "the worker was stopped at its budget of 20 s (--load-seconds) while loading second.pt")


def test_a_worker_stopped_before_any_file_tries_none(two_files: list) -> None:
    environment, results = _stopped("2.13.0", [], two_files, loading=0, seconds=5)
    assert environment["torch"] == "2.13.0"
    assert [r["loads"]["deadline"]["status"] for r in results] == ["skip"] * 3
    assert results[0]["loads"]["deadline"]["message"] == (
        "the worker was stopped at its budget of 5 s (--load-seconds) before loading any file (importing torch or "
        "the --import modules)")


def test_the_default_memory_cap_grows_with_the_largest_file(tmp_path: Path) -> None:
    small = tmp_path / "small.pt"
    torch.save({"w": torch.zeros(2)}, small)
    assert default_memory_mb([inspect_file(small)]) == 16384
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:  # sparse: 8 GiB apparent, no disk used
        handle.truncate(8 * 2**30)
    assert default_memory_mb([inspect_file(small), inspect_file(big)]) == 3 * 8 * 1024


@pytest.mark.slow
def test_a_load_that_hangs_is_stopped_and_named(tmp_path: Path) -> None:
    (tmp_path / "slowuser.py").write_text(textwrap.dedent(SLOW_USER))
    made = subprocess.run([sys.executable, "-c", "import torch, slowuser; torch.save({'w': torch.zeros(2), "
                           "'x': slowuser.Slow()}, 'slow.pt'); torch.save({'w': torch.ones(2)}, 'after.pt')"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    status, verdicts = check(str(tmp_path / "slow.pt"), str(tmp_path / "after.pt"), "--torch", DEV_RELEASE,
                             "--allow-unsafe", "--import", "slowuser", "--path", str(tmp_path),
                             "--load-seconds", "40")
    assert status == 1
    slow, after = verdicts["slow.pt"], verdicts["after.pt"]
    assert slow["status"] == "fail" and slow["loads"]["deadline"]["message"] == (
        "did not finish within the worker's budget of 40 s (--load-seconds)"), slow
    assert after["headline"] == ("not tried (the worker was stopped at its budget of 40 s (--load-seconds) while "
                                 "loading slow.pt)"), after


@pytest.mark.slow
def test_a_load_past_the_memory_cap_fails_and_a_small_one_still_loads(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(64 * 2**20)}, tmp_path / "big.pt")  # 256 MiB of storage
    torch.save({"w": torch.zeros(2)}, tmp_path / "small.pt")
    status, verdicts = check(str(tmp_path / "big.pt"), str(tmp_path / "small.pt"), "--torch", DEV_RELEASE,
                             "--load-memory-mb", "128")
    assert status == 1 and verdicts["small.pt"]["status"] == "ok", verdicts["small.pt"]
    big = verdicts["big.pt"]
    assert big["status"] == "fail" and "memory" in big["loads"]["weights_only"]["message"].lower(), big["loads"]
    status, verdicts = check(str(tmp_path / "big.pt"), "--torch", DEV_RELEASE)
    assert status == 0 and verdicts["big.pt"]["status"] == "ok", "under the default cap the same file loads"
