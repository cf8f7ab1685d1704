"""Nothing lost: concurrent and killed produce / consume runs (real CLI, subprocesses, tiny cases).

- two ``produce`` runs with different ``--case`` into one ``--out``: both land in the one
  environment folder (its manifest lists both, every listed file is there with its hash);
- two ``consume`` runs into one ``--results``: each either writes the complete file or is refused
  with one line (exit 2) because the other holds it; the file always parses and is complete;
- a killed run loses nothing that was there before and its leftovers go with the next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.fingerprint import hash_file
from tests.conftest import REPO, run_cli

TRIALS = 10
pytestmark = pytest.mark.slow


def popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=600)
    return process.returncode, err


def assert_complete_environment(out: Path, cases: set[str]) -> None:
    (env,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    manifest = json.loads((env / "manifest.json").read_text())
    assert set(manifest["cases"]) == cases
    assert {e["case"] for e in manifest["entries"]} == cases
    for entry in manifest["entries"]:
        path = env / entry["file"]
        assert path.stat().st_size == entry["file_bytes"] and hash_file(path) == entry["file_hash"]
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert hidden == [], hidden  # no staging folder left behind


def test_concurrent_produces_with_different_cases_both_land(tmp_path: Path) -> None:
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        runs = [popen("produce", "--out", str(out), "--case", case, "--format", "state_dict_zip")
                for case in ("simple", "lenet")]
        results = [finish(run) for run in runs]
        assert [code for code, _ in results] == [0, 0], results
        assert_complete_environment(out, {"simple", "lenet"})


def test_concurrent_consumes_into_one_results_file_lose_nothing(tmp_path: Path) -> None:
    art = tmp_path / "art"
    assert run_cli("produce", "--out", str(art), "--case", "simple", "--format", "state_dict_zip").returncode == 0
    reference = tmp_path / "reference.jsonl"
    assert run_cli("consume", str(art), "--results", str(reference)).returncode == 0
    expected = len(reference.read_text().splitlines())
    refused = 0
    for trial in range(TRIALS):
        results = tmp_path / f"r{trial}.jsonl"
        runs = [popen("consume", str(art), "--results", str(results)) for _ in range(2)]
        outcomes = [finish(run) for run in runs]
        for code, err in outcomes:
            if code == 2:
                refused += 1
                # the refusal comes at the first record (after this run's progress lines): one error line
                errors = [line for line in err.splitlines() if line.startswith("ckpt-harness: error: ")]
                assert len(errors) == 1 and "another ckpt-harness run is writing it" in errors[0], err
                assert "Traceback" not in err
            else:
                assert code == 0, err
        assert any(code == 0 for code, _ in outcomes)
        lines = results.read_text().splitlines()
        assert len(lines) == expected and all(json.loads(line)["case"] == "simple" for line in lines)
    print(f"{TRIALS} trials, {refused} runs refused because the other held the file")


def test_a_killed_consume_keeps_the_previous_results_and_its_part_file_goes_next_time(tmp_path: Path) -> None:
    art = tmp_path / "art"
    assert run_cli("produce", "--out", str(art), "--case", "simple").returncode == 0
    keep = tmp_path / "keep.jsonl"
    keep.write_text("precious\n")
    run = popen("consume", str(art), "--results", str(keep))
    deadline = time.time() + 300
    while not list(tmp_path.glob(".keep.jsonl.*.part")) and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert keep.read_text() == "precious\n"
    assert run_cli("consume", str(art), "--results", str(keep)).returncode == 0
    assert keep.read_text() != "precious\n" and not list(tmp_path.glob(".keep.jsonl.*.part"))


def test_a_killed_produce_leaves_staging_that_the_next_run_removes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = popen("produce", "--out", str(out), "--case", "simple", "--case", "lenet", "--format", "state_dict_zip")
    deadline = time.time() + 300
    while not [p for p in out.glob(".*") if p.is_dir()] and time.time() < deadline and run.poll() is None:
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert [p for p in out.glob(".*") if p.is_dir()], "the kill came too late to leave a staging folder"
    assert run_cli("produce", "--out", str(out), "--case", "simple", "--format", "state_dict_zip").returncode == 0
    assert_complete_environment(out, {"simple"})
