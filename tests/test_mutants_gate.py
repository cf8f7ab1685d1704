"""The mutation gate (tests/mutants_gate.py) can fail: an unexplained survivor, a low score, no run at all;
and merged runs let a re-run's result replace an earlier one only for the mutants it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import mutants_gate


def _run(folder: Path, codes: dict[str, int | None]) -> Path:
    (folder / "harness").mkdir(parents=True, exist_ok=True)
    (folder / "harness" / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    return folder


def _gate(tmp_path: Path, *runs: Path, listed: str = "", score: float = 90) -> int:
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text(listed)
    args = [a for run in runs for a in ("--mutants", str(run))]
    return mutants_gate.main([*args, "--equivalent", str(equivalent), "--min-score", str(score)])


def test_an_unexplained_survivor_fails_and_a_listed_one_passes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "a", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 0, "m.x_f__mutmut_3": None})
    assert _gate(tmp_path, run, score=0) == 1
    assert "survived: m.x_f__mutmut_2" in capsys.readouterr().out
    assert _gate(tmp_path, run, listed="m.x_f__mutmut_2 only differs on a GPU\n", score=0) == 0
    assert "2 mutants run: 1 killed, 1 survived as listed equivalent, 0 survived unexplained; score 100.0% of 1" \
        in capsys.readouterr().out


def test_a_score_under_the_gate_fails_and_a_listing_needs_a_reason(tmp_path: Path) -> None:
    run = _run(tmp_path / "a", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 0})
    assert _gate(tmp_path, run, listed="m.x_f__mutmut_2 equivalent: a default never read\n", score=100) == 0
    assert _gate(tmp_path, _run(tmp_path / "b", {"m.x_f__mutmut_1": 0, "m.x_f__mutmut_2": 1}),
                 listed="m.x_f__mutmut_1 why\n", score=100) == 0
    assert _gate(tmp_path, _run(tmp_path / "c", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 1,
                                                 "m.x_f__mutmut_3": 0}), listed="m.x_f__mutmut_3 why\n",
                 score=100) == 0
    assert _gate(tmp_path, _run(tmp_path / "d", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 36,
                                                 "m.x_f__mutmut_3": 0}), score=60) == 1
    with pytest.raises(SystemExit, match="has no reason"):
        _gate(tmp_path, run, listed="m.x_f__mutmut_2\n")


def test_nothing_run_is_an_error(tmp_path: Path) -> None:
    assert _gate(tmp_path, _run(tmp_path / "a", {"m.x_f__mutmut_1": None})) == 2


def test_a_later_run_replaces_only_the_results_it_has(tmp_path: Path) -> None:
    first = _run(tmp_path / "first", {"m.x_f__mutmut_1": 0, "m.x_f__mutmut_2": 1, "m.x_f__mutmut_3": 0})
    second = _run(tmp_path / "second", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": None, "m.x_f__mutmut_3": None})
    assert mutants_gate.merged([first, second]) == {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 1,
                                                    "m.x_f__mutmut_3": 0}
    assert _gate(tmp_path, first, second, score=0) == 1, "mutant 3 still survives: the re-run did not run it"
    assert _gate(tmp_path, first, _run(tmp_path / "third", {"m.x_f__mutmut_3": 1}), second, score=0) == 0
