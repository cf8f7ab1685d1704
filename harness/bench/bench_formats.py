"""The checkpoint I/O benchmarks, run by ``ckpt-harness bench`` through pytest-benchmark.

One test, parametrized by :mod:`harness.bench.plugin` into every (size, format, operation,
cache state). The benchmarks of one size are timed together, their rounds interleaved
(:mod:`harness.bench.rounds`): each round times every format, operation and baseline once, in a
rotating order, in two identical series A and A' whose difference is the run's own noise floor
(``aa_noise``). One untimed warmup round comes first, the garbage collector is off, and setup
(cache state) and freeing a round's objects are never timed. Each test then hands its times to
pytest-benchmark, which writes the JSON. A benchmark fails when its rounds did not do the work:
a load that returned other bytes than were saved, a file that was not written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from harness.bench.operations import OPERATIONS
from harness.bench.plugin import SETTINGS, Item, plan
from harness.bench.rounds import SizeRounds
from harness.bench.rss import Probe
from harness.bench.sizes import label
from harness.bench.workspace import Workspace


@pytest.fixture(scope="session")
def workspace(request: pytest.FixtureRequest) -> Iterator[Workspace]:
    """A private folder under the work dir, and the RSS probe process, for the whole run."""
    settings = request.config.stash[SETTINGS]
    settings.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=settings.workdir))
    space = Workspace(root, Probe(settings.plugins) if settings.rss else None)
    yield space
    space.close()
    root.rmdir()


@pytest.fixture(scope="session")
def size_rounds(request: pytest.FixtureRequest, workspace: Workspace) -> SizeRounds:
    settings = request.config.stash[SETTINGS]
    return SizeRounds(list(plan(settings)), workspace, settings.rounds, settings.clock)


def test_io(item: Item, benchmark, size_rounds: SizeRounds) -> None:
    operation = OPERATIONS[item.operation]
    outcome = size_rounds.outcome(item)
    if outcome.skip:
        pytest.skip(outcome.skip)
    assert outcome.series is not None, outcome.problem
    benchmark.group = f"{label(item.size_bytes)} {operation.direction}"
    benchmark.extra_info.update({
        "format": item.format or "baseline", "operation": item.operation, "kind": operation.kind,
        "direction": operation.direction, "size": label(item.size_bytes), "size_bytes": item.size_bytes,
        "cache": item.cache, "baseline": operation.baseline, **outcome.info})
    stats = benchmark._make_stats(1)  # the interleaved rounds' times, in the order they were taken
    for seconds in outcome.series.times:
        stats.update(seconds)
    assert outcome.problem is None, outcome.problem
