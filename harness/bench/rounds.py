"""All benchmarks of one size, timed together: their rounds interleaved, then checked.

pytest runs one test per benchmark, but timing them one after the other would compare formats
measured minutes apart. The first test of a size runs every benchmark of that size through
:func:`harness.bench.interleave.run` (each round: every format, operation and baseline once, in
a rotating order, twice: the A and A' series), checks each one's work (``finish``), measures the
peak RSS of its loads, and keeps the outcomes; each test then reports its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

from harness.bench import interleave
from harness.bench.operations import OPERATIONS
from harness.bench.workspace import Workspace

#: what ``--clock`` may name: wall time, or the process's CPU time (immune to a shared machine's
#: preemption, blind to waits for the disk: use it for warm loads and saves without fsync)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclasses.dataclass
class Outcome:
    """One benchmark's result: its series, or why it was skipped; its check; extra_info."""

    series: Optional[interleave.Series] = None
    skip: str = ""
    problem: Optional[str] = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class SizeRounds:
    """Runs each size's benchmarks together on first request; ``outcome(item)`` is then a lookup."""

    def __init__(self, items: list[Any], workspace: Workspace, rounds: int, clock: str = "wall") -> None:
        self.items, self.workspace, self.rounds, self.clock = items, workspace, rounds, clock
        self._done: dict[Any, Outcome] = {}

    def outcome(self, item: Any) -> Outcome:
        if item not in self._done:
            self._run([i for i in self.items if i.size_bytes == item.size_bytes])
        return self._done[item]

    def _run(self, items: list[Any]) -> None:
        timed, turns = {}, {}
        for item in items:
            operation = OPERATIONS[item.operation]
            subject = self.workspace.subject(item.size_bytes, item.format)
            reason = operation.unavailable(subject) if subject.payload is not None else None
            if reason:
                self._done[item] = Outcome(skip=reason)
                continue
            try:
                work = operation.make(subject, item.cache)
            except Exception as exc:  # this benchmark fails; the others of the size still run
                self._done[item] = Outcome(problem=f"setting up raised {type(exc).__name__}: {exc}")
                continue
            guard = _Guard(work)
            timed[item] = (operation, subject, work, guard)
            turns[item.id] = interleave.Turn(guard.target, guard.setup, guard.teardown)
        series = interleave.run(turns, self.rounds, warmup=1, clock=CLOCKS[self.clock])
        for item, (operation, subject, work, guard) in timed.items():
            if guard.problem:
                self._done[item] = Outcome(problem=guard.problem)
                continue
            info = {**work.info, "aa_noise": series[item.id].floor, "interleaved_with": len(turns) - 1,
                    "clock": self.clock, "series_rounds": self.rounds}
            if operation.kind == "format" and operation.direction == "load" and item.cache == "warm":
                info.update(self.workspace.peak_rss(subject, mapped=item.operation == "load_mmap"))
            self._done[item] = Outcome(series[item.id], problem=work.finish(), info=info)


class _Guard:
    """One benchmark's turns, stopped at its first exception (kept as its problem): a format that
    cannot save or load fails its own tests, not every benchmark of the size."""

    def __init__(self, work: Any) -> None:
        self.work, self.problem = work, ""

    def _call(self, step: str, function: Callable[[], None]) -> None:
        if self.problem:
            return
        try:
            function()
        except Exception as exc:
            self.problem = f"{step} raised {type(exc).__name__}: {exc}"

    def setup(self) -> None:
        self._call("setup", self.work.setup)

    def target(self) -> None:
        self._call("the timed operation", self.work.target)

    def teardown(self) -> None:
        self._call("teardown", self.work.teardown)
