"""Every check can fail: broken formats, a drifting case and a foreign producer must produce ``fail``
records through the real CLI (produce and consume in subprocesses).

tests/test_checks_fast.py runs the same damage in-process, check by check; this file proves the
records the matrix writes say the same.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import index, records, run_cli
from tests.plugins.damage import CAUGHT as CAUGHT_IN_PROCESS
from tests.plugins.damage import all_broken

pytestmark = pytest.mark.slow

PLUGIN = "tests.plugins.broken"
BROKEN = [fmt.name for fmt in all_broken()]


@pytest.fixture(scope="module")
def broken_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("broken")
    formats = [arg for name in BROKEN + ["state_dict_zip", "whole_model_zip"] for arg in ("--format", name)]
    cases = ["--case", "tied", "--case", "batchnorm", "--case", "drifting", "--case", "simple"]
    produced = run_cli("produce", "--plugin", PLUGIN, "--out", str(out / "art"), *cases, *formats)
    assert produced.returncode == 0, produced.stderr
    consumed = run_cli("consume", "--plugin", PLUGIN, str(out / "art"), "--results", str(out / "r.jsonl"),
                       extra_env={"CKPT_HARNESS_TEST_DRIFT": "0.001"})
    return consumed.returncode, index(records(out / "r.jsonl"))


#: the in-process tier's damage table (tests/plugins/damage.py), and the drifting case, which only a
#: consume in another process (with CKPT_HARNESS_TEST_DRIFT set) can show
CAUGHT = CAUGHT_IN_PROCESS + [("drifting", "state_dict_zip", "outputs", "not bit-identical")]


@pytest.mark.parametrize("case, fmt, check, words", CAUGHT)
def test_broken_thing_is_caught(broken_records: tuple[int, dict], case: str, fmt: str, check: str,
                                words: str) -> None:
    _, by_key = broken_records
    record = by_key[(case, fmt, check)]
    assert record["status"] == "fail", record
    assert words in record["detail"]


def test_healthy_formats_still_pass_beside_broken_ones(broken_records: tuple[int, dict]) -> None:
    _, by_key = broken_records
    for check in ("tensors", "sharing", "outputs", "resave"):
        assert by_key[("tied", "state_dict_zip", check)]["status"] == "pass"
    assert by_key[("tied", "whole_model_zip", "sharing")]["status"] == "pass"
    assert by_key[("batchnorm", "whole_model_zip", "mode")]["status"] == "pass"


def test_checks_with_nothing_to_compare_skip_with_the_reason(broken_records: tuple[int, dict]) -> None:
    _, by_key = broken_records
    record = by_key[("simple", "broken_change_value", "optimizer_device")]  # SGD: no tensor step
    assert record["status"] == "skip" and "no tensor step" in record["detail"]


def test_drop_buffer_makes_the_strict_load_into_a_fresh_model_an_error(broken_records: tuple[int, dict]) -> None:
    _, by_key = broken_records
    record = by_key[("batchnorm", "broken_drop_buffer", "outputs")]
    assert record["status"] == "error"
    assert record["detail"].startswith("RuntimeError: Error(s) in loading state_dict")


def test_consume_exits_non_zero_on_failures(broken_records: tuple[int, dict]) -> None:
    returncode, _ = broken_records
    assert returncode == 1


def _make_foreign(source: Path, target: Path, shift: dict[str, float], drop_next_step: tuple[str, ...]) -> None:
    """A copy of ``source`` as if another release wrote it, with each case's stored outputs and next
    step moved by ``shift[case]`` times that case's tolerance (atol / resume_atol)."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["env"]["torch"], manifest["env_id"] = "2.13.0+elsewhere", target.name
    (target / "manifest.json").write_text(json.dumps(manifest))
    for case, section in manifest["cases"].items():
        path = target / section["outputs_file"]
        stored = torch.load(path, weights_only=True)
        by = shift.get(case, 0.0)
        stored["outputs"] = {k: v + by * section["atol"] for k, v in stored["outputs"].items()}
        if "next_step" in stored:
            stored["next_step"] = {k: v + by * section["resume_atol"] if v.is_floating_point() else v
                                   for k, v in stored["next_step"].items()}
        if case in drop_next_step:
            stored.pop("next_step", None)
        torch.save(stored, path)


@pytest.fixture(scope="module")
def foreign_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("foreign")
    cases = ["--case", "tied", "--case", "simple", "--case", "batchnorm"]
    formats = ["--format", "training_checkpoint"]
    produced = run_cli("produce", "--out", str(out / "here"), *cases, *formats)
    assert produced.returncode == 0, produced.stderr
    (source,) = [p for p in (out / "here").iterdir() if (p / "manifest.json").is_file()]
    _make_foreign(source, out / "art" / "torch-2.13.0+elsewhere", {"tied": 10.0, "simple": 0.25},
                  drop_next_step=("batchnorm",))
    # the edited manifest breaks the producer's seal: vouch for it, as a user would for a colleague's folder
    consumed = run_cli("consume", str(out / "art"), "--results", str(out / "r.jsonl"), "--trust")
    return consumed.returncode, index(records(out / "r.jsonl"))


@pytest.mark.parametrize("case, check, status, words", [
    ("tied", "outputs", "fail", "exceeds atol"),
    ("tied", "resume", "fail", "away from the producer's uninterrupted step"),
    ("simple", "outputs", "pass", "within atol"),
    ("simple", "resume", "pass", "within"),
    ("batchnorm", "resume", "skip", "stored none"),
])
def test_a_foreign_producer_is_held_to_the_tolerances(foreign_records: tuple[int, dict], case: str, check: str,
                                                      status: str, words: str) -> None:
    returncode, by_key = foreign_records
    record = by_key[(case, "training_checkpoint", check)]
    assert record["status"] == status, record
    assert "elsewhere" in record["producer"]["torch"]
    assert words in record["detail"]
    assert returncode == 1
