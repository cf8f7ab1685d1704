"""Every check can fail: broken formats and a drifting case must produce ``fail`` records."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import index, records, run_cli

PLUGIN = "tests.plugins.broken"
BROKEN = ["broken_drop_buffer", "broken_flip_bit", "broken_untie", "broken_flip_mode", "broken_forget_momentum",
          "broken_lossy_resave"]


@pytest.fixture(scope="module")
def broken_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("broken")
    formats = [arg for name in BROKEN + ["state_dict_zip", "whole_model_zip"] for arg in ("--format", name)]
    cases = ["--case", "tied", "--case", "batchnorm", "--case", "drifting"]
    produced = run_cli("produce", "--plugin", PLUGIN, "--out", str(out / "art"), *cases, *formats)
    assert produced.returncode == 0, produced.stderr
    consumed = run_cli("consume", "--plugin", PLUGIN, str(out / "art"), "--results", str(out / "r.jsonl"),
                       extra_env={"CKPT_HARNESS_TEST_DRIFT": "0.001"})
    return consumed.returncode, index(records(out / "r.jsonl"))


@pytest.mark.parametrize("case, fmt, check, words", [
    ("batchnorm", "broken_drop_buffer", "tensors", "missing"),
    ("tied", "broken_flip_bit", "tensors", "values differ"),
    ("tied", "broken_flip_bit", "outputs", "not bit-identical"),
    ("tied", "broken_untie", "sharing", "sharing changed"),
    ("batchnorm", "broken_flip_mode", "mode", "changed train/eval flag"),
    ("tied", "broken_forget_momentum", "resume", "bitexact: false; resumed step differs"),
    ("tied", "broken_lossy_resave", "resave", "missing"),
    ("drifting", "state_dict_zip", "outputs", "not bit-identical"),
])
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


def test_drop_buffer_makes_the_strict_load_into_a_fresh_model_an_error(broken_records: tuple[int, dict]) -> None:
    _, by_key = broken_records
    record = by_key[("batchnorm", "broken_drop_buffer", "outputs")]
    assert record["status"] == "error"
    assert record["detail"].startswith("RuntimeError: Error(s) in loading state_dict")


def test_consume_exits_non_zero_on_failures(broken_records: tuple[int, dict]) -> None:
    returncode, _ = broken_records
    assert returncode == 1
