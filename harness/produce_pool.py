"""Produce cases in parallel worker processes (``produce --jobs N``).

Modelled on :mod:`harness.consume_pool`: each worker is forked from a server process that imported torch,
the harness, torchvision and the packages the formats import on their first save once
(:mod:`harness._produce_preload`) (``forkserver``, where the platform has it; else ``spawn``): no state comes
from the parent. A worker imports the same ``--plugin`` modules, then produces whole cases, one task each:
:func:`harness.produce._produce_case` writes the case's files under the shared staging folder (its own
``<case>/`` folder and ``outputs/<case>.pt``, so no two workers write the same file) and returns the case's
manifest section and entries. The parent merges them in the serial order (case order, then format order), so
the manifest is a serial run's but for the timings (``save_seconds``).

Why a worker's output is a serial run's: every case seeds torch, numpy and ``random`` itself before it builds
its models (under its seed), draws its inputs (seed + 1) and trains (seed + 2), so the RNG state a worker's
earlier cases leave behind is never read; the template a case keeps (:meth:`harness.case.Case.template`) is
built under the case's seed only; the ``compiled`` case runs TorchDynamo with the eager backend, whose kernels are
eager torch's whatever Dynamo cached before. Workers keep torch's default intra-op thread count, the one a
serial run uses (fewer threads sum floats in another order; see :mod:`harness.consume_pool`).

The cases in :data:`HEAVY_FIRST` are handed out first, so that one vgg16 does not run alone at the end.
Cases are looked up by name in the worker: a case registered only in the parent's process (a test's
``CASES.temporarily``, :func:`harness.roundtrip.roundtrip_model`) must be produced with ``jobs=1``.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Generator, Optional, Sequence

from harness import consume_pool
from harness.errors import HarnessError

#: the most expensive seed cases (building, exporting, saving, hashing), handed out first, in this order
HEAVY_FIRST = ("vgg16", "resnet18", "transformer")

#: modules the workers' server imports once; consume's too, so that ``roundtrip``'s consume workers find them
#: (a server already started keeps the list it started with)
PRELOAD = ("harness.produce", "harness.produce_pool", "harness.consume", "harness.consume_pool",
           "harness._worker_preload", "harness._produce_preload")

#: this worker process's state, set once by ``_start`` (one process produces many cases)
_WORKER: dict[str, Any] = {}


def hand_out_order(names: Sequence[str]) -> list[int]:
    """Indices into ``names`` in the order the workers get them: :data:`HEAVY_FIRST` cases first, in that
    order, then the others in their given order."""
    rank = {name: position for position, name in enumerate(HEAVY_FIRST)}
    return sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(HEAVY_FIRST)), i))


def run(cases: Sequence[str], formats: Sequence[str], staging: Path, device: str, jobs: int,
        plugins: Sequence[str] = (), done: Optional[Callable[[int], None]] = None
        ) -> Generator[dict[str, Any], None, None]:
    """Each case's manifest part ``{"cases": {name: section}, "entries": [...]}``, in the order of ``cases``,
    produced by ``jobs`` workers into ``staging``; ``done(i)`` is called as case ``i``'s part arrives.

    A worker that dies is a :class:`HarnessError`; an exception a case raises outside what
    :func:`harness.produce._produce_case` records is raised here, as a serial run raises it."""
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=_context(), initializer=_start,
        initargs=(list(plugins), list(formats), str(staging), device))
    finished = False
    try:
        futures = {i: pool.submit(_produce_one, cases[i]) for i in hand_out_order(cases)}
        for i in range(len(cases)):
            try:
                part = futures[i].result()
            except BrokenProcessPool:
                raise HarnessError(f"a produce worker process ended abruptly (killed, or out of memory?) before case "
                                   f"{cases[i]!r} was done; run produce with --jobs 1 to see which case") from None
            if done:
                done(i)
            yield part
        finished = True
    finally:
        pool.shutdown(wait=True, cancel_futures=not finished)  # a failed run does not wait for the cases left


def _context() -> Any:
    return consume_pool.server_context(PRELOAD)


def start_server() -> None:
    """Start the workers' server now, where the platform has one (it imports torch and torchvision)."""
    consume_pool.start_server(PRELOAD)


def _start(plugins: list[str], formats: list[str], staging: str, device: str) -> None:
    """Worker initializer: import the plugins, keep what every case is produced with."""
    from harness.plugins import load_plugins

    load_plugins(plugins)
    _WORKER.update(formats=formats, staging=Path(staging), device=device)


def _produce_one(name: str) -> dict[str, Any]:
    from harness.case import CASES
    from harness.formats import FORMATS
    from harness.produce import _produce_case

    if name not in CASES:
        raise HarnessError(f"case {name!r} is not registered in a produce worker process (registered at run time, "
                           "not by a module or --plugin?); produce it with --jobs 1")
    part: dict[str, Any] = {"cases": {}, "entries": []}
    formats = [FORMATS.get(fmt) for fmt in _WORKER["formats"]]
    _produce_case(CASES.get(name), formats, _WORKER["staging"], part, _WORKER["device"])
    return part
