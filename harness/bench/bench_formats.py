"""The checkpoint I/O benchmarks, run by ``ckpt-harness bench`` through pytest-benchmark.

One test, parametrized by :mod:`harness.bench.plugin` into every (size, format, operation,
cache state). Each runs ``--ckpt-rounds`` timed rounds after one warmup round, with the garbage
collector off (``--benchmark-disable-gc``); setup (cache state, freeing the last round's
objects) is never timed. A benchmark fails when its rounds did not do the work: a load that
returned other bytes than were saved, a file that was not written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from harness.bench.operations import OPERATIONS
from harness.bench.plugin import SETTINGS, Item
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


def test_io(item: Item, benchmark, workspace: Workspace, request: pytest.FixtureRequest) -> None:
    settings = request.config.stash[SETTINGS]
    operation = OPERATIONS[item.operation]
    subject = workspace.subject(item.size_bytes, item.format)
    if subject.payload is not None:
        reason = operation.unavailable(subject)
        if reason:
            pytest.skip(reason)
    timed = operation.make(subject, item.cache)
    benchmark.group = f"{label(item.size_bytes)} {operation.direction}"
    benchmark.extra_info.update({
        "format": item.format or "baseline", "operation": item.operation, "kind": operation.kind,
        "direction": operation.direction, "size": label(item.size_bytes), "size_bytes": item.size_bytes,
        "cache": item.cache, "baseline": operation.baseline, **timed.info})
    benchmark.pedantic(timed.target, setup=timed.setup, rounds=settings.rounds, warmup_rounds=1, iterations=1)
    problem = timed.finish()
    assert problem is None, problem
    if operation.kind == "format" and operation.direction == "load" and item.cache == "warm":
        benchmark.extra_info.update(workspace.peak_rss(subject, mapped=item.operation == "load_mmap"))
