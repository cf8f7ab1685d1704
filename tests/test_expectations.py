"""Expected outcomes: matching, expiry, unexpected passes, and validation of the data file."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from harness import expectations
from harness.errors import HarnessError
from harness.expectations import Expectation, judge

FLIP = Expectation(id="flip", reason="default became weights_only", outcome="error", format="whole_model_*",
                   check="load", load_mode="default", consumer_torch=">=2.6")


def record(status: str, consumer: str = "2.13.0+cpu", fmt: str = "whole_model_zip", mode: str = "default") -> dict:
    return {"case": "simple", "format": fmt, "check": "load", "load_mode": mode, "status": status,
            "producer": {"torch": "2.5.1+cu124"}, "consumer": {"torch": consumer}}


def test_expected_error_is_excused_and_annotated() -> None:
    rec = record("error")
    assert judge(rec, [FLIP]) is None
    assert rec["expected"] == {"id": "flip", "reason": "default became weights_only"}


def test_outside_the_torch_range_an_error_is_unexpected() -> None:
    assert judge(record("error", consumer="2.5.1+cu124"), [FLIP]) == "unexpected error"


def test_an_expected_failure_that_passes_fails_the_run() -> None:
    rec = record("pass")
    assert judge(rec, [FLIP]) == "unexpected pass (expected error: flip)"
    assert rec["expected"] == {"id": "flip", "reason": "default became weights_only", "unexpected_pass": True}


def test_other_outcome_than_expected_is_unexpected() -> None:
    assert judge(record("fail"), [FLIP]) == "unexpected fail"


def test_expired_entries_excuse_nothing() -> None:
    expired = Expectation(**{**FLIP.__dict__, "expires": datetime.date(2020, 1, 1)})
    assert judge(record("error"), [expired]) == "unexpected error"
    assert judge(record("error"), [expired], today=datetime.date(2019, 12, 31)) is None
    assert judge(record("error"), [expired], today=datetime.date(2020, 1, 1)) is None  # the expiry day still counts
    assert judge(record("error"), [expired], today=datetime.date(2020, 1, 2)) == "unexpected error"


def test_patterns_must_all_match() -> None:
    assert judge(record("error", fmt="state_dict_zip"), [FLIP]) == "unexpected error"
    assert judge(record("error", mode="unsafe"), [FLIP]) == "unexpected error"


def test_skips_and_plain_passes_are_never_problems() -> None:
    assert judge(record("skip"), [FLIP]) is None
    assert judge(record("pass", fmt="state_dict_zip"), [FLIP]) is None


def test_packaged_file_parses_and_every_entry_has_a_reason() -> None:
    entries = expectations.load()
    assert entries and all(e.reason and e.outcome in ("fail", "error") for e in entries)
    assert len({e.id for e in entries}) == len(entries)


@pytest.mark.parametrize("text, words", [
    ("[[expected]]\nid='x'\noutcome='error'\n",
     "entry 'x' needs id, reason and outcome fail|error (unknown keys: none)"),
    ("[[expected]]\nreason='r'\noutcome='boom'\n",
     "entry '<no id>' needs id, reason and outcome fail|error (unknown keys: none)"),
    ("[[expected]]\nid='x'\nreason='r'\noutcome='error'\ncolour='red'\n", "unknown keys: ['colour']"),
    ("expected = 3\n", "'expected' must be an array of tables ([[expected]] entries)"),
    ("[[expected]]\nid='x'\noutcome='error'\nbreak='no-such-break'\n",
     "entry 'x' names break 'no-such-break', which is not in harness/data/breaks.toml"),
    ("[[expected]]\nid='x'\noutcome='error'\nbreak='default-weights-only-2.6'\nreason='mine'\n",
     "entry 'x' links break 'default-weights-only-2.6': its reason come from harness/data/breaks.toml, not from here"),
    ("[[expected]]\nid='x'\noutcome='error'\nbreak='default-weights-only-2.6'\nconsumer_torch='>1'\n"
     "producer_torch='>1'\n", "links break 'default-weights-only-2.6': its consumer_torch, producer_torch come from"),
    ("[[expected]]\nid='x'\nreason='r'\noutcome='error'\nproducer_torch='>>2'\n", "bad torch range"),
    ("[[expected]]\nid='x'\nreason='r'\noutcome='error'\nconsumer_torch='>>2'\n", "bad torch range"),
    ("not toml at all [", "do not parse"),
])
def test_bad_expectation_files_are_one_line_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "expected.toml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=None) as info:
        expectations.load(path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: "), "the one line names the file it is about"


def test_a_missing_expectations_file_says_what_to_pass(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(HarnessError) as info:
        expectations.load(missing)
    assert str(info.value) == f"no such expectations file: {missing}; pass a TOML file like harness/data/expected.toml"


def test_a_file_with_no_entries_expects_nothing(tmp_path: Path) -> None:
    path = tmp_path / "expected.toml"
    path.write_text("# nothing is expected to break\n")
    assert expectations.load(path) == []



def test_an_entry_linking_a_break_takes_its_reason_and_ranges_from_the_catalog(tmp_path: Path) -> None:
    from harness import breaks

    known = breaks.load()["default-weights-only-2.6"]
    path = tmp_path / "expected.toml"
    path.write_text("[[expected]]\nid='x'\noutcome='error'\nbreak='default-weights-only-2.6'\n")
    (entry,) = expectations.load(path)
    assert (entry.break_id, entry.reason, entry.consumer_torch, entry.producer_torch) == (
        known.id, known.reason(), known.consumer, known.producer)


def test_the_producer_range_must_match_too() -> None:
    old_producers = Expectation(**{**FLIP.__dict__, "producer_torch": "<2.5"})
    assert judge(record("error"), [old_producers]) == "unexpected error"  # the record's producer is 2.5.1
    assert judge(record("error"), [Expectation(**{**FLIP.__dict__, "producer_torch": ">=2.5"})]) is None
