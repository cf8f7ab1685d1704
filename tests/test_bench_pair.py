"""``bench-compare --interleave``: two releases' workers taking turns beside an identical rerun.

The logic is proven with fake workers on a simulated shared machine (slow spells, per-turn jitter)
whose times come from a seeded generator: a planted 20 % slowdown on one side is flagged, and ten
identical A/A reruns are not. Real worker processes run in the slow tests: this torch against itself
with the planted slowdown plugin, and two built release environments where they exist.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bench import interleave, pair
from harness.bench.compare import BASELINE, FEW_ROUNDS, REGRESSION, SAME
from harness.bench.worker import item_id
from harness.checkfile import envs
from tests.conftest import run_cli

ITEMS = [pair.Item(1 << 20, None, "memcpy", "n/a", "baseline", "memcpy"),
         pair.Item(1 << 20, "state_dict_zip", "save", "n/a", "format", "raw_write"),
         pair.Item(1 << 20, "state_dict_zip", "load", "warm", "format", "raw_read")]


class Machine:
    """A shared machine: slow spells (another process) come and go, a few turns long, and each turn jitters."""

    def __init__(self, seed: int, jitter: float = 0.03, spell: float = 0.6, busy_from: int = 0) -> None:
        self.random, self.jitter, self.spell, self.left = random.Random(seed), jitter, spell, 0
        self.busy_from, self.turns = busy_from, 0  # busy_from > 0: one long spell from that turn on, no others
        self.calls: list[tuple[str, str]] = []

    def seconds(self, base: float) -> float:
        self.turns += 1
        if not self.busy_from and self.left == 0 and self.random.random() < 0.1:  # a spell of 2 to 6 turns
            self.left = self.random.randint(2, 6)
        busy = 1 + self.spell if self.left or (self.busy_from and self.turns > self.busy_from) else 1.0
        self.left = max(0, self.left - 1)
        return base * busy * self.random.lognormvariate(0, self.jitter)


class FakeWorker:
    """A worker that answers like :mod:`harness.bench.worker`, timing turns on the simulated machine."""

    def __init__(self, name: str, machine: Machine, slower: float = 0.0, broken: str = "") -> None:
        self.name, self.machine, self.slower, self.broken = name, machine, slower, broken
        self.closed = False

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if op == "prepare":
            return {"ready": {item_id(i): None for i in fields["items"]},
                    "machine": {"torch": self.name}}
        if op == "turn":
            self.machine.calls.append((self.name, fields["id"]))
            if self.broken and fields["id"].endswith(self.broken):
                return {"problem": "the timed operation raised RuntimeError: planted"}
            base = 0.010 if "baseline" in fields["id"] else 0.050
            return {"seconds": self.machine.seconds(base * (1 + self.slower))}
        if op == "finish":
            return {"problems": {i.id: None for i in ITEMS}, "info": {}}
        raise AssertionError(op)

    def close(self) -> None:
        self.closed = True


def workers(seed: int, slower: float = 0.0, rerun_slower: float = 0.0, machine: Any = None,
            **new: Any) -> dict[str, pair.Worker]:
    machine = machine or Machine(seed)
    return {"old": FakeWorker("old", machine), "rerun": FakeWorker("rerun", machine, rerun_slower),
            "new": FakeWorker("new", machine, slower, **new)}


def verdicts(sides: dict[str, pair.Worker], rounds: int = 7, threshold: float = 0.10) -> dict[str, str]:
    outcomes, _ = pair.run(sides, ITEMS, rounds, Path("/nonexistent"))
    return {c.fields["operation"]: c.status for c in pair.comparisons(outcomes, threshold)}


def test_a_planted_20_percent_slowdown_of_one_release_is_flagged() -> None:
    found = verdicts(workers(seed=1, slower=0.20))
    assert found == {"memcpy": BASELINE, "save": REGRESSION, "load": REGRESSION}


@pytest.mark.parametrize("seed", range(10))
def test_ten_identical_a_a_reruns_are_not_flagged(seed: int) -> None:
    found = verdicts(workers(seed=100 + seed))
    assert found == {"memcpy": BASELINE, "save": SAME, "load": SAME}


def test_a_slow_spell_lands_on_both_releases_alike() -> None:
    """Timed one after the other, a 60 % slow spell during the new release's run would be a regression;
    interleaved, every spell slows both sides' turns of the same rounds."""
    machine = Machine(seed=7, busy_from=14)  # another process starts as the new release's run begins
    one_after_the_other = [machine.seconds(0.05) for _ in range(14)], [machine.seconds(0.05) for _ in range(14)]
    assert interleave.paired_change(*one_after_the_other) > 0.5  # what two runs one after the other report
    turns = (len(ITEMS) * len(pair.SIDES)) * (1 + 2 * 7)
    busy = workers(seed=7, machine=Machine(seed=7, busy_from=turns // 2))  # busy for the second half of the window
    assert verdicts(busy) == {"memcpy": BASELINE, "save": SAME, "load": SAME}


def test_the_gate_holds_back_within_the_identical_reruns_floor() -> None:
    """A rerun 30 % apart from its reference says this machine cannot tell 20 % apart: nothing is flagged."""
    assert verdicts(workers(seed=3, slower=0.20, rerun_slower=0.30))["save"] == SAME


def test_every_round_gives_each_side_a_turn_in_a_rotating_order() -> None:
    sides = workers(seed=5)
    pair.run(sides, ITEMS, rounds=4, workdir=Path("/nonexistent"))
    calls = sides["old"].machine.calls  # type: ignore[attr-defined]
    per_round = len(ITEMS) * len(pair.SIDES) * 2
    warmup = len(ITEMS) * len(pair.SIDES)
    rounds = [calls[warmup + i:warmup + i + per_round] for i in range(0, 4 * per_round, per_round)]
    assert all({name for name, _ in r} == set(pair.SIDES) for r in rounds)
    assert all(sorted(r) == sorted(rounds[0]) for r in rounds)  # every (side, benchmark) twice per round
    assert len({r[0] for r in rounds}) == 4  # a different first turn each round


def test_few_rounds_are_shown_but_never_gate() -> None:
    assert verdicts(workers(seed=1, slower=0.5), rounds=3)["save"] == FEW_ROUNDS


def test_a_benchmark_that_breaks_in_one_worker_fails_alone() -> None:
    outcomes, _ = pair.run(workers(seed=2, broken="load-warm"), ITEMS, 5, Path("/nonexistent"))
    broken = {o.item.operation: o.problem for o in outcomes}
    assert broken["load"].startswith("new: the timed operation raised") and not broken["save"]
    assert {c.fields["operation"] for c in pair.comparisons(outcomes, 0.1)} == {"memcpy", "save"}


def test_judge_gates_beyond_the_identical_reruns_floor() -> None:
    steady = interleave.Series([1.0] * 5, [1.0] * 5)
    apart = interleave.Series([1.25] * 5, [1.25] * 5)  # the identical rerun 25 % from its reference
    slower = interleave.Series([1.2] * 5, [1.2] * 5)
    item = ITEMS[1]
    judged = pair.judge(item, {"old": steady, "rerun": steady, "new": slower}, 0.1)
    assert judged.status == REGRESSION and judged.change == pytest.approx(0.2) and judged.floor == 0
    held = pair.judge(item, {"old": steady, "rerun": apart, "new": slower}, 0.1)
    assert held.status == SAME and held.floor == pytest.approx(0.25)
    assert pair.judge(ITEMS[0], {"old": steady, "rerun": steady, "new": slower}, 0.1).status == BASELINE


def test_document_keeps_every_sides_times_and_the_verdicts() -> None:
    outcomes, machines = pair.run(workers(seed=4, slower=0.2), ITEMS, 5, Path("/nonexistent"))
    doc = pair.document(outcomes, pair.comparisons(outcomes, 0.1), machines, 0.1)
    json.dumps(doc)
    save = next(b for b in doc["benchmarks"] if b["operation"] == "save")
    assert save["status"] == REGRESSION and set(save["times"]) == set(pair.SIDES)
    assert all(len(t) == 10 for t in save["times"].values())
    assert doc["machines"]["new"] == {"torch": "new"}


def test_a_release_without_an_environment_is_one_clear_error(capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from harness.cli import main

    monkeypatch.setenv("CKPT_HARNESS_ENVS", str(tmp_path))
    monkeypatch.setattr(envs, "REPO", tmp_path)
    status = main(["bench-compare", "--interleave", "0.0.1", sys.executable])
    err = capsys.readouterr().err
    assert status == 2 and "no built environment for torch 0.0.1" in err, err


# -- real worker processes (slow) ----------------------------------------------------------------

LIVE = ["--sizes", "2MB", "--format", "state_dict_zip", "--operation", "save", "--operation", "load",
        "--rounds", "7", "--threshold", "50%"]


@pytest.mark.slow
def test_real_workers_flag_a_slowdown_planted_in_the_new_side_only(tmp_path: Path) -> None:
    """This interpreter against itself; the new side imports tests.plugins.slow (state_dict_zip ~50 ms slower
    on a ~2 ms operation), the other two sides do not."""
    out = tmp_path / "pair.json"
    result = run_cli("bench-compare", "--interleave", sys.executable, sys.executable, *LIVE,
                     "--new-plugin", "tests.plugins.slow", "--json", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    flagged = {line.split()[2] for line in result.stderr.splitlines() if line.startswith("regression: state_dict_zip")}
    assert flagged == {"save", "load"}, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {b["status"] for b in doc["benchmarks"] if b["kind"] == "baseline"} == {BASELINE}


def _two_releases() -> list[str]:
    found = [r for r in ("2.5.1", "2.6.0", "2.14.1", "1.13.1") if envs.find(r)]
    return found[:2]


@pytest.mark.slow
@pytest.mark.skipif(len(_two_releases()) < 2, reason="needs two built release environments (nox, or "
                    "CKPT_HARNESS_ENVS naming a folder of torch-<release> environments)")
def test_two_real_releases_take_turns_and_their_identical_rerun_is_not_flagged(tmp_path: Path) -> None:
    old, new = _two_releases()
    out = tmp_path / "pair.json"
    result = run_cli("bench-compare", "--interleave", old, old, *LIVE, "--json", str(out),
                     extra_env={"CKPT_HARNESS_ENVS": os.environ.get("CKPT_HARNESS_ENVS", "")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run_cli("bench-compare", "--interleave", old, new, *LIVE, "--json", str(out))
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["machines"]["old"]["torch"].startswith(old) and doc["machines"]["new"]["torch"].startswith(new)
    assert all(len(b["times"]["new"]) == 14 for b in doc["benchmarks"] if not b["skip"] and not b["problem"])


def test_the_worker_times_each_turn_itself_and_checks_the_work_at_the_end(tmp_path: Path) -> None:
    """The real worker's server, in this process: prepare, turns, finish (what the coordinator sends)."""
    import io

    from harness.bench import worker

    items = [pair.Item(64 << 10, None, "memcpy", "n/a", "baseline"),
             pair.Item(64 << 10, "state_dict_zip", "load", "warm"),
             pair.Item(64 << 10, "state_dict_legacy", "load_mmap", "warm")]
    requests = [{"op": "prepare", "items": [i.request for i in items], "workdir": str(tmp_path), "threads": None,
                 "plugins": [], "clock": "cpu"},
                *[{"op": "turn", "id": i.id} for i in items[:2] for _ in range(3)], {"op": "finish"},
                {"op": "turn", "id": "never-prepared"}]
    answers = io.StringIO()
    worker.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), answers)
    ready, *turns, finished, unknown = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert ready["ready"][items[0].id] is None and ready["ready"][items[1].id] is None
    assert ready["ready"][items[2].id]["skip"]  # the legacy stream cannot be mapped: a skip, with the reason
    assert all(t["seconds"] >= 0 for t in turns) and len(turns) == 6
    assert finished["problems"] == {items[0].id: None, items[1].id: None}
    assert finished["info"][items[1].id]["load_mode"] == "weights_only"
    assert "error" in unknown and list(tmp_path.iterdir()) == []
