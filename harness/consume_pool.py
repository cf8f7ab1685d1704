"""Consume artifacts in parallel worker processes (``consume --jobs N``).

Each worker is forked from a server process that imported torch and the harness once
(``forkserver``, where the platform has it; else ``spawn``, a fresh interpreter that imports them
itself): no state comes from the parent. A worker imports the same ``--plugin`` modules and then
consumes whole artifacts, one task each. Workers keep torch's default intra-op thread count, the
one produce and a serial consume run with: a float reduction split over fewer threads sums in
another order, and "bit-identical in the same environment" would fail (the transformer's outputs
differ by ~4e-7 with one thread per worker). The parent reads and verifies every manifest before any
worker starts, judges every record against the expectations, and writes the records in the order
a serial run writes them, so the records file and the summary do not depend on ``--jobs``.
Byte-identical files go to one worker as one task, which reuses the outcomes of the checks that allow it
(:class:`harness.consume.Reuse`); big tasks are handed out first, so that one vgg16 does not finish alone at the end.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

#: this worker process's state, set once by ``_start`` (one process consumes many artifacts)
_WORKER: dict[str, Any] = {}


def cores() -> int:
    """The cores this process may run on: the default for ``--jobs``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_threads(jobs: int = 2) -> list[int]:
    """torch's intra-op thread count in each of ``jobs`` workers (a serial run's count, see above)."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=_context()) as pool:
        return list(pool.map(_threads, range(jobs)))


def _threads(_: int) -> int:
    import torch

    return torch.get_num_threads()


def run(artifacts: Sequence[Any], consumer: dict[str, Any], workdir: Path, jobs: int,
        plugins: Sequence[str] = (), started: Optional[Callable[[int], None]] = None) -> Iterator[list[Any]]:
    """Each artifact's records (a list per artifact, in the order of ``artifacts``), consumed by
    ``jobs`` workers; ``started(i)`` is called as artifact ``i``'s records arrive. Byte-identical files
    (:func:`harness.consume.identical_files`) go to one worker together, which reuses what it may."""
    from harness.consume import identical_files

    def size(group: list[int]) -> int:
        return sum(int(artifacts[i].entry.get("file_bytes") or 0) for i in group)

    context = _context()
    with concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_start,
            initargs=(list(artifacts), consumer, str(workdir), list(plugins))) as pool:
        where: dict[int, tuple[concurrent.futures.Future, int]] = {}
        for group in sorted(identical_files(artifacts), key=lambda g: -size(g)):
            future = pool.submit(_consume_group, group)
            where.update({index: (future, position) for position, index in enumerate(group)})
        for i in range(len(artifacts)):
            future, position = where[i]
            records = future.result()[position]
            if started:
                started(i)
            yield records


#: modules the consume workers' server imports once
PRELOAD = ("harness.consume", "harness.consume_pool", "harness._worker_preload")


def _context() -> Any:
    return server_context(PRELOAD)


def server_context(preload: Sequence[str]) -> Any:
    """The multiprocessing context of worker pools (consume's, produce's): ``forkserver`` whose server imports
    ``preload`` once, where the platform has it, else ``spawn``. A server already started keeps its own list."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def start_server(preload: Sequence[str] = PRELOAD) -> None:
    """Start the workers' server now, where the platform has one: it imports torch and the optional packages
    while the caller does other work (consume hashes the artifacts), instead of when the first worker starts."""
    if server_context(preload).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _start(artifacts: list[Any], consumer: dict[str, Any], workdir: str, plugins: list[str]) -> None:
    """Worker initializer: import the plugins, keep the artifacts and a private work folder."""
    from harness.plugins import load_plugins

    load_plugins(plugins)
    _WORKER.update(artifacts=artifacts, consumer=consumer,
                   workdir=Path(tempfile.mkdtemp(prefix=f"worker-{os.getpid()}-", dir=workdir)))


def _consume_group(indices: list[int]) -> list[list[Any]]:
    """The records of each artifact in ``indices`` (byte-identical files), in order, sharing one Reuse."""
    from harness.consume import Reuse, consume_artifact

    reuse = Reuse()
    return [list(consume_artifact(_WORKER["artifacts"][i], _WORKER["consumer"], _WORKER["workdir"], reuse))
            for i in indices]
