"""``consume --jobs N`` gives the records of a serial run, and folded records count as what they stand for."""

from __future__ import annotations

import argparse
import collections
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness import env as envmod
from harness.checks import CHECKS
from harness.commands import _options
from harness.consume import FOLDED_CHECK, collect, consume_artifact
from harness.consume_pool import worker_threads
from harness.report import model
from harness.summary import grid_counts, print_summary
from tests.conftest import records, run_cli

SMALL = ["--case", "simple", "--case", "tied", "--format", "state_dict_zip", "--format", "whole_model_legacy",
         "--format", "safetensors", "--format", "training_checkpoint"]


def _record(check: str, status: str, count: int = 1, fmt: str = "state_dict_zip") -> dict[str, Any]:
    env = {"torch": "2.13.0", "device": "cpu"}
    return {"producer": env, "consumer": env, "case": "simple", "format": fmt, "check": check,
            "load_mode": "weights_only", "status": status, "detail": "", "duration_s": 0.0, "artifact": "a",
            "warnings": [], "expected": None, "problem": None, "count": count}


def _comparable(recs: list[dict[str, Any]]) -> list[str]:
    """Records without their timings, as sorted JSON lines: an order-independent comparison."""
    return sorted(json.dumps({k: v for k, v in r.items() if k != "duration_s"}, sort_keys=True) for r in recs)


def test_a_folded_record_counts_as_the_records_it_stands_for() -> None:
    recs = [_record("load", "pass"), _record(FOLDED_CHECK, "skip", count=7)]
    buffer = io.StringIO()
    print_summary(recs, Console(file=buffer, width=200))
    total = next(line for line in buffer.getvalue().splitlines() if "total" in line)
    assert [cell.strip() for cell in total.split("│")[2:6]] == ["1", "0", "0", "7"]
    assert sum(grid_counts(recs)[("state_dict_zip", "2.13.0/cpu", "2.13.0/cpu")].values()) == 8
    view = model.build(recs, ["r.jsonl"])
    assert view.totals == {"pass": 1, "skip": 7}
    assert {s.records for s in view.sessions} == {8}
    # records written before folding existed have no count: each is one
    assert sum(grid_counts([{k: v for k, v in r.items() if k != "count"} for r in recs])
               [("state_dict_zip", "2.13.0/cpu", "2.13.0/cpu")].values()) == 2


def test_jobs_must_be_a_positive_whole_number() -> None:
    parser = argparse.ArgumentParser()
    _options.jobs_argument(parser)
    assert parser.parse_args(["--jobs", "3"]).jobs == 3
    assert parser.parse_args([]).jobs >= 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as raised:
            parser.parse_args(["--jobs", bad])
        assert raised.value.code == 2


@pytest.mark.slow
def test_workers_keep_the_serial_thread_count() -> None:
    """Fewer intra-op threads sum floats in another order: same-environment outputs would not be bit-identical."""
    import torch

    assert worker_threads(2) == [torch.get_num_threads()] * 2


@pytest.mark.slow
def test_later_load_modes_write_one_folded_record(tmp_path: Path) -> None:
    """A pickle loaded three ways: the checks left to the first mode are one skip record per later mode,
    counting as many records as the per-check skips it replaces."""
    assert run_cli("produce", "--out", str(tmp_path / "art"), "--case", "simple", "--format",
                   "state_dict_zip").returncode == 0
    (artifact,) = collect([tmp_path / "art"])
    recs = list(consume_artifact(artifact, envmod.describe("cpu"), tmp_path))
    concerned = [c for c in CHECKS if c.concerns(artifact.entry)]
    left = sorted(c.name for c in concerned if not c.every_load_mode)
    by_mode = collections.defaultdict(list)
    for r in recs:
        by_mode[r.load_mode].append(r)
    assert set(by_mode) == {"default", "weights_only", "unsafe"}
    first, *later = [m for m in ("default", "weights_only", "unsafe")]
    assert not any(r.check == FOLDED_CHECK for r in by_mode[first])
    for mode in later:
        (folded,) = [r for r in by_mode[mode] if r.check == FOLDED_CHECK]
        assert folded.status == "skip" and folded.count == len(left) > 1
        assert all(name in folded.detail for name in left) and f"load mode {first}" in folded.detail
        assert {r.check for r in by_mode[mode]} == {"load", FOLDED_CHECK} | {
            c.name for c in concerned if c.every_load_mode}
        # what the summary counts for this mode: a load, every check once
        assert sum(r.count for r in by_mode[mode]) == 1 + len(concerned)


@pytest.mark.slow
def test_jobs_2_gives_the_records_and_summary_of_a_serial_run(tmp_path: Path) -> None:
    made = run_cli("produce", "--out", str(tmp_path / "art"), *SMALL)
    assert made.returncode == 0, made.stderr[-2000:]
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.jsonl"
        done = run_cli("consume", str(tmp_path / "art"), "--results", str(out), "--jobs", jobs)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = run_cli("summary", str(out))
        assert summary.returncode == 0, summary.stderr[-2000:]
        runs[jobs] = (records(out), summary.stdout)
    (serial, serial_summary), (parallel, parallel_summary) = runs["1"], runs["2"]
    assert len(serial) > 50 and {r["format"] for r in serial} == {"state_dict_zip", "whole_model_legacy",
                                                                    "safetensors", "training_checkpoint"}
    assert _comparable(parallel) == _comparable(serial)
    assert parallel_summary == serial_summary


def test_junit_has_one_case_per_artifact_and_pair_and_names_what_went_wrong() -> None:
    import xml.etree.ElementTree as ET

    from harness.report.renderers import junit

    recs = [_record("load", "pass"), _record("tensors", "fail"), _record(FOLDED_CHECK, "skip", count=5),
            _record("load", "skip", fmt="safetensors"),
            {**_record("load", "error", fmt="whole_model_zip"), "expected": {"id": "known", "reason": "why"}},
            _record("tensors", "pass", fmt="whole_model_zip")]
    recs[1]["problem"], recs[1]["detail"] = "unexpected fail", "weight: values differ"
    root = ET.fromstring(junit.render(model.build(recs, ["r.jsonl"])))
    cases = {case.get("classname").split(".")[0]: case for case in root.iter("testcase")}
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("skipped") == "1"
    failure = cases["state_dict_zip"].find("failure")
    assert failure is not None and "tensors[weights_only]: weight: values differ (unexpected fail)" in failure.text
    assert cases["state_dict_zip"].get("assertions") == "1"
    assert cases["safetensors"].find("skipped") is not None
    assert cases["whole_model_zip"].find("skipped") is None
    assert "load[weights_only]: why" in cases["whole_model_zip"].find("system-out").text
