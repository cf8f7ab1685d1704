"""Two releases timed in the same window, taking turns: ``bench-compare --interleave OLD NEW``.

Comparing two JSON files compares runs made minutes or days apart; on a shared machine a busy
spell during one of them is a "regression". Here three worker processes (:mod:`harness.bench.worker`)
run at once: the reference release (``old``), an identical second process of it (``rerun``) and the
release to judge (``new``). Every round, each benchmark takes one turn in each worker and each of its
two series (:func:`harness.bench.interleave.run`, order rotating from round to round), so a slow
spell lands on both releases alike. Only one worker works at any moment; the others wait on their pipe.

For each benchmark, ``change`` is the median over rounds of newᵢ / oldᵢ − 1 (paired within a round),
and the A/A floor is the same statistic between the identical rerun and the reference: the same
measure over as many pairs, so it is what this machine, now, makes of no change at all. (Each
worker's own A and A' series give a floor too, kept in the JSON; it pairs half as many rounds, and
gating on the largest of four noisy floors missed a planted 20 % slowdown in 1 of 6 simulated runs,
against none with the rerun's.) A benchmark is a regression when it got slower by more than the
threshold *and* beyond that floor;
baselines (memcpy, raw I/O) are shown but never gate. The workers are reached through the
:class:`Worker` protocol, so the logic is tested with fake workers and no torch at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from harness.bench import interleave
from harness.bench.compare import BASELINE, FASTER, FEW_ROUNDS, MIN_ROUNDS, REGRESSION, SAME, Comparison
from harness.bench.items import Item
from harness.errors import HarnessError

#: the three workers: the reference, its identical rerun (the A/A floor) and the release judged
SIDES = ("old", "rerun", "new")
#: the folder holding the ``harness`` package: every worker runs this very benchmark code
HARNESS_ROOT = Path(__file__).resolve().parents[2]


class Worker(Protocol):
    """One side's process, request by request (see :mod:`harness.bench.worker` for the answers)."""

    def request(self, op: str, **fields: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


class ProcessWorker:
    """A worker process run by ``python`` (another release's interpreter), importing this harness."""

    def __init__(self, python: str, threads: Optional[int]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HARNESS_ROOT), env.get("PYTHONPATH", "")) if p)
        if threads:
            env.update({name: str(threads) for name in interleave.THREAD_VARIABLES})
        self.python = python
        self._child = subprocess.Popen([python, "-m", "harness.bench.worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self._child.stdin is not None and self._child.stdout is not None
        try:
            self._child.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self._child.stdin.flush()
        except BrokenPipeError:
            raise HarnessError(f"the benchmark worker {self.python} exited (status {self._child.wait()})") from None
        line = self._child.stdout.readline()
        if not line:
            raise HarnessError(f"the benchmark worker {self.python} exited (status {self._child.wait()}); "
                               "its stderr above says why")
        answer = json.loads(line)
        if "error" in answer:
            raise HarnessError(f"benchmark worker {self.python}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._child.stdin:
            self._child.stdin.close()
        self._child.wait(timeout=120)


@dataclasses.dataclass
class Outcome:
    """One benchmark's three series (by side), or why it has none."""

    item: Item
    series: dict[str, interleave.Series] = dataclasses.field(default_factory=dict)
    skip: str = ""
    problem: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Judged:
    """How the new release compares with the old one on one benchmark."""

    change: float  # median over rounds of newᵢ / oldᵢ − 1: +0.2 is 20 % slower
    floor: float  # |median of rerunᵢ / oldᵢ − 1|: the identical rerun's A/A floor, what the change must exceed
    status: str
    #: each worker's own A/A floor (its A and A' series), shown but not gating
    own: dict[str, float] = dataclasses.field(default_factory=dict)


def judge(item: Item, series: dict[str, interleave.Series], threshold: float) -> Judged:
    """Judge one benchmark from its old, rerun and new series (timed in the same rounds)."""
    old, rerun, new = (series[side] for side in SIDES)
    change = interleave.paired_change(old.times, new.times)
    floor = abs(interleave.paired_change(old.times, rerun.times))
    if item.kind == "baseline":
        status = BASELINE
    elif min(len(s.a) for s in (old, rerun, new)) < MIN_ROUNDS:
        status = FEW_ROUNDS
    elif change > threshold and change > floor:
        status = REGRESSION
    elif -change > threshold and -change > floor:
        status = FASTER
    else:
        status = SAME
    return Judged(change, floor, status, {side: s.floor for side, s in series.items()})


class _Remote:
    """A turn timed inside a worker: returns the worker's seconds; stops at its first problem."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.worker, self.name, self.problem = worker, name, ""

    def __call__(self) -> float:
        if self.problem:
            return 0.0
        answer = self.worker.request("turn", id=self.name)
        self.problem = answer.get("problem", "")
        return float(answer.get("seconds", 0.0))


def run(workers: Mapping[str, Worker], items: Sequence[Item], rounds: int, workdir: Path, threads: Optional[int] = 1,
        plugins: Optional[dict[str, list[str]]] = None, clock: str = "wall",
        progress: Optional[Callable[[str], None]] = None) -> tuple[list[Outcome], dict[str, Any]]:
    """Every benchmark of ``items``, size by size, interleaved across the three workers; the outcomes
    and each side's machine info. ``plugins`` are the modules each side imports (by side name)."""
    outcomes: list[Outcome] = []
    machines: dict[str, Any] = {}
    for size in sorted({i.size_bytes for i in items}, key=[i.size_bytes for i in items].index):
        batch = [i for i in items if i.size_bytes == size]
        if progress:
            progress(f"{len(batch)} benchmarks of {batch[0].id.split('-')[0]}, {rounds} rounds x 2 series x "
                     f"{len(SIDES)} workers")
        ready = {}
        for side in SIDES:
            answer = workers[side].request("prepare", items=[i.request for i in batch], workdir=str(workdir),
                                           threads=threads, plugins=(plugins or {}).get(side, []), clock=clock)
            ready[side], machines[side] = answer["ready"], answer["machine"]
        timed: dict[str, tuple[Item, dict[str, _Remote]]] = {}
        for item in batch:
            states = [ready[side][item.id] for side in SIDES]
            reason = next((s for s in states if s), None)
            if reason:
                outcomes.append(Outcome(item, skip=reason.get("skip", ""), problem=reason.get("problem", "")))
                continue
            timed[item.id] = (item, {side: _Remote(workers[side], item.id) for side in SIDES})
        turns = {f"{side}|{name}": interleave.Turn(lambda: None, timed=remote)
                 for name, (_, remotes) in timed.items() for side, remote in remotes.items()}
        series = interleave.run(turns, rounds, warmup=1) if turns else {}
        finished = {side: workers[side].request("finish") for side in SIDES}
        for name, (item, remotes) in timed.items():
            problem = next((f"{side}: {r.problem}" for side, r in remotes.items() if r.problem), "") or next(
                (f"{side}: {finished[side]['problems'][name]}" for side in SIDES if finished[side]["problems"][name]),
                "")
            outcomes.append(Outcome(item, {side: series[f"{side}|{name}"] for side in SIDES}, problem=problem,
                                    info=finished["old"]["info"].get(name, {})))
    return outcomes, machines


def comparisons(outcomes: Sequence[Outcome], threshold: float) -> list[Comparison]:
    """The judged outcomes as :class:`~harness.bench.compare.Comparison` rows (for the table and gate)."""
    from harness.bench.sizes import label

    out = []
    for outcome in outcomes:
        if not outcome.series or outcome.problem:
            continue
        item = outcome.item
        judged = judge(item, outcome.series, threshold)
        rows = {}
        for side in ("old", "new"):
            times = outcome.series[side].times
            rows[side] = {"format": item.format or "baseline", "operation": item.operation,
                          "size_bytes": item.size_bytes, "cache": item.cache, "size": label(item.size_bytes),
                          "kind": item.kind, "baseline": item.baseline, "rounds": len(times),
                          "median": outcome.series[side].median, "min": min(times), "max": max(times),
                          "aa_noise": judged.floor}
        key = (rows["old"]["format"], item.operation, item.size_bytes, item.cache)
        out.append(Comparison(key, rows["old"], rows["new"], judged.change, judged.floor, judged.status, judged.floor))
    return out


def plan(sizes: Sequence[int], formats: Sequence[str], operations: Sequence[str], caches: Sequence[str]) -> list[Item]:
    """The benchmarks to compare, size by size: the baselines, then each format's operations (as ``bench``)."""
    from harness.bench.operations import NO_CACHE, OPERATIONS, by_kind
    from harness.bench.payload import bench_case, formats_for

    wanted = set(operations or OPERATIONS)
    items = []
    for size in sizes:
        groups = [(None, by_kind("baseline"))] + [
            (fmt.name, by_kind("format")) for fmt in formats_for(list(formats), bench_case(size))]
        for fmt, ops in groups:
            for op in ops:
                if fmt is None or op.name in wanted:
                    items += [Item(size, fmt, op.name, cache, op.kind, op.baseline)
                              for cache in op.caches if cache == NO_CACHE or cache in caches]
    return items


def document(outcomes: Sequence[Outcome], judged: Sequence[Comparison], machines: dict[str, Any],
             threshold: float) -> dict[str, Any]:
    """The JSON record of one interleaved comparison: every side's times, the verdicts, the machines."""
    verdicts = {c.key: c for c in judged}
    rows = []
    for outcome in outcomes:
        item = outcome.item
        verdict = verdicts.get((item.format or "baseline", item.operation, item.size_bytes, item.cache))
        rows.append({**item.request, "format": item.format or "baseline", "kind": item.kind,
                     "skip": outcome.skip, "problem": outcome.problem,
                     "times": {side: s.times for side, s in outcome.series.items()},
                     "change": verdict.change if verdict else None, "floor": verdict.floor if verdict else None,
                     "status": verdict.status if verdict else None, "info": outcome.info,
                     "own_floors": {side: s.floor for side, s in outcome.series.items()}})
    return {"machines": machines, "threshold": threshold, "sides": list(SIDES), "benchmarks": rows,
            "method": "three workers (old, an identical rerun of old, new) take turns round by round, each in two "
                      "series; change = median of paired new/old - 1; gated only beyond the A/A floor"}
