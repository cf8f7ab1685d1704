"""Interleaved timing: the things being compared take turns, round by round, in one time window.

Timing A for a while and then B for a while lets anything that changes in between (another
process on a shared machine, the CPU clocking down, the page cache filling) land on one side
only. Here every round times each subject once, in an order that rotates from round to round,
so a slow spell is shared out. Each subject is timed twice per round, as two identical series
"A" and "A'": how far their medians differ is the machine's own noise floor for that subject,
measured beside the comparison it qualifies (an A/A rerun that costs no extra session).

A comparison then gates only beyond that floor: ``change > threshold`` *and* ``change > floor``.
Nothing here knows about formats; :mod:`harness.bench.bench_formats` feeds it the operations.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from typing import Callable, Mapping, Optional, Sequence

#: environment variables that pin the BLAS / OpenMP thread pools (read when the libraries load)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclasses.dataclass
class Turn:
    """One subject's turn: untimed ``setup``, timed ``target``, untimed ``teardown`` (free what it made).

    A turn timed elsewhere (in another process, :mod:`harness.bench.pair`) gives ``timed`` instead:
    it runs the whole turn and returns the seconds its own clock measured around the target.
    """

    target: Callable[[], None]
    setup: Callable[[], None] = lambda: None
    teardown: Callable[[], None] = lambda: None
    timed: Optional[Callable[[], float]] = None


@dataclasses.dataclass
class Series:
    """A subject's times: series A and A' (seconds), interleaved with every other subject's."""

    a: list[float]
    a_prime: list[float]

    @property
    def times(self) -> list[float]:
        return self.a + self.a_prime

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def floor(self) -> float:
        """The A/A noise floor: how far two identical series differ, |median of A'ᵢ / Aᵢ − 1|."""
        return abs(paired_change(self.a, self.a_prime))


def paired_change(old: Sequence[float], new: Sequence[float]) -> float:
    """median over rounds of newᵢ / oldᵢ, minus 1: the two were timed in the same round, moments apart,
    so a slow spell of the machine slows both and cancels out of their ratio."""
    ratios = [n / o for o, n in zip(old, new) if o > 0]
    return statistics.median(ratios) - 1 if ratios else float("inf")


def relative_change(new: float, old: float) -> float:
    """|new / old − 1| (infinite when old is 0)."""
    return abs(new / old - 1) if old else float("inf")


def schedule(names: Sequence[str], rounds: int) -> list[tuple[str, int]]:
    """The order of turns: each round has every (name, series) once, rotated by the round number
    so that no subject always follows the same one or always comes first after a pause."""
    turns = [(name, series) for series in (0, 1) for name in names]
    order: list[tuple[str, int]] = []
    for number in range(rounds):
        shift = number % len(turns)
        order.extend(turns[shift:] + turns[:shift])
    return order


def run(turns: Mapping[str, Turn], rounds: int, warmup: int = 1,
        clock: Callable[[], float] = time.perf_counter) -> dict[str, Series]:
    """Time every subject ``rounds`` times in each of its two series, interleaved; the garbage
    collector is off while timing, and ``warmup`` untimed rounds of each subject come first."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in turns}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in turns:
            for _ in range(warmup):
                _take(turns[name], clock)
        for name, series in schedule(list(turns), rounds):
            times[name][series].append(_take(turns[name], clock))
    finally:
        if enabled:
            gc.enable()
    return {name: Series(list(a), list(b)) for name, (a, b) in times.items()}


def _take(turn: Turn, clock: Callable[[], float]) -> float:
    if turn.timed is not None:
        return turn.timed()
    turn.setup()
    started = clock()
    turn.target()
    elapsed = clock() - started
    turn.teardown()
    return elapsed


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How B compares with A in one interleaved run."""

    change: float  # median of Bᵢ / Aᵢ over the rounds − 1: +0.2 is 20 % slower
    floor: float  # the larger A/A noise floor of the two
    threshold: float

    @property
    def regression(self) -> bool:
        return self.change > self.threshold and self.change > self.floor

    @property
    def faster(self) -> bool:
        return -self.change > self.threshold and -self.change > self.floor


def compare(old: Series, new: Series, threshold: float) -> Verdict:
    """Judge ``new`` against ``old`` (both from one interleaved run) on their paired per-round ratios,
    gating only beyond the larger A/A noise floor of the two."""
    return Verdict(paired_change(old.times, new.times), max(old.floor, new.floor), threshold)


def pin_threads(threads: Optional[int]) -> None:
    """One intra-op thread count for the whole run: torch's, and the BLAS/OpenMP pools' for any
    process started from here (a shared machine's scheduling then moves one thread, not a team)."""
    import os

    if not threads:
        return
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)
