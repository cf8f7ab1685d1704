"""The malicious-pickle canary: real loads in subprocesses, verdicts, expectations, bad input."""

from __future__ import annotations

import datetime
import json
import pickletools
from pathlib import Path

import pytest

from harness import canary, compat, expectations
from tests.conftest import REPO, records, run_cli
from tests.test_bad_input import assert_one_line_error


def test_the_canary_holds_a_reduce_payload_aimed_inside_its_folder(tmp_path: Path) -> None:
    path, marker = canary.build(tmp_path)
    assert marker.parent == tmp_path and not marker.exists()  # building it runs nothing
    import zipfile

    with zipfile.ZipFile(path) as archive:
        pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pickle_bytes)]
    assert ("REDUCE", None) in ops and str(marker) in [arg for _, arg in ops]


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("canary") / "canary.jsonl"
    before = set(REPO.iterdir())
    result = run_cli("canary", "--results", str(out))
    assert set(REPO.iterdir()) == before  # nothing (no marker) landed in the working folder
    return result, {r["load_mode"]: r for r in records(out)}


def test_weights_only_refuses_and_full_unpickle_executes(canary_run: tuple) -> None:
    result, by_mode = canary_run
    assert set(by_mode) == set(canary.MODES)
    if not compat.has_weights_only():
        pytest.skip("this torch.load has no weights_only parameter")
    assert by_mode["weights_only"]["status"] == "pass", by_mode["weights_only"]
    assert by_mode["weights_only"]["detail"].startswith("refused")
    # The canary works: weights_only=False runs it (else this canary could never catch anything).
    assert by_mode["unsafe"]["status"] == "pass" and "executed" in by_mode["unsafe"]["detail"]


def test_default_verdict_follows_the_release_default(canary_run: tuple) -> None:
    result, by_mode = canary_run
    default = by_mode["default"]
    if compat.default_weights_only():
        assert default["status"] == "pass" and default["problem"] is None
        assert result.returncode == 0, result.stdout + result.stderr
    else:  # a release whose plain torch.load unpickles everything: reported prominently
        assert default["status"] == "fail" and "DEFAULT" in default["detail"]
        assert "WARNING" in result.stdout
        assert default["expected"] and default["expected"]["id"] == "canary-default-load-runs-pickled-code"


@pytest.mark.skipif(not compat.default_weights_only(), reason="the release's default load is already a full unpickle")
def test_forcing_the_default_to_full_unpickle_is_a_finding(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    result = run_cli("canary", "--results", str(out), extra_env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    default = {r["load_mode"]: r for r in records(out)}["default"]
    assert default["status"] == "fail" and default["problem"] == "unexpected fail"
    assert result.returncode == 1 and "WARNING" in result.stdout and "executes code" in result.stdout


def test_summary_reads_canary_records(canary_run: tuple, tmp_path: Path) -> None:
    result, by_mode = canary_run
    out = tmp_path / "c.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in by_mode.values()))
    summary = run_cli("summary", str(out))
    assert summary.returncode == result.returncode, summary.stdout + summary.stderr
    assert "malicious_pickle" in summary.stdout


def _record(torch: str, mode: str, status: str) -> dict:
    side = {"torch": torch, "device": "cpu"}
    return {"producer": side, "consumer": side, "case": canary.CASE, "format": canary.FORMAT, "check": canary.CHECK,
            "load_mode": mode, "status": status}


@pytest.mark.parametrize("torch, mode, problem", [
    ("2.5.1", "default", None),                         # expected of releases before the 2.6 flip
    ("1.13.1", "default", None),
    ("2.6.0", "default", "unexpected fail"),            # from 2.6 the default must refuse
    ("2.5.1", "weights_only", "unexpected fail"),       # weights_only executing is never excused
])
def test_packaged_expectations_excuse_only_old_default_loads(torch: str, mode: str, problem: str) -> None:
    known = expectations.load()
    assert expectations.judge(_record(torch, mode, "fail"), known, datetime.date(2026, 1, 1)) == problem


@pytest.mark.parametrize("outcome, status", [
    (canary.CanaryOutcome("weights_only", executed=True, loaded=True), "fail"),
    (canary.CanaryOutcome("weights_only", executed=False, loaded=False, error="UnpicklingError: no"), "pass"),
    (canary.CanaryOutcome("default", executed=True, loaded=True), "fail"),
    (canary.CanaryOutcome("unsafe", executed=False, loaded=True), "error"),  # a canary that does not fire
    (canary.CanaryOutcome("unsafe", executed=True, loaded=True), "pass"),
    (canary.CanaryOutcome("weights_only", False, False, "no weights_only", unsupported=True), "skip"),
])
def test_outcome_status_mapping(outcome: canary.CanaryOutcome, status: str) -> None:
    assert outcome.status == status


def test_results_path_that_is_a_folder(tmp_path: Path) -> None:
    result = run_cli("canary", "--results", str(tmp_path))
    assert_one_line_error(result, str(tmp_path), "is a folder")
