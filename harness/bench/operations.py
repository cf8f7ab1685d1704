"""What one benchmark times: the format operations and the baselines they are judged against.

Each :class:`Operation` turns a :class:`Subject` (the bytes, the files, the format) into a
:class:`Timed`: an untimed ``setup`` run before every round, the timed ``target``, and a
``finish`` that checks the rounds did the work. Loads touch every byte of what they loaded
inside the timed region (:mod:`harness.bench.touch`), and their setup puts the file in the
page-cache state the benchmark is labelled with, verified each round (:mod:`harness.bench.pagecache`).

Baselines run on the same bytes in the same run: ``memcpy`` of the payload's storages,
``raw_write`` / ``raw_write_fsync`` of one file holding them, ``raw_read`` of that file.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

import torch

from harness import compat
from harness.bench import pagecache
from harness.bench.payload import Payload
from harness.bench.touch import touch
from harness.case import Case
from harness.formats import LoadRequest

#: cache labels: "warm"/"cold" for reads (verified each round); writes and memcpy have none
NO_CACHE = "n/a"


@dataclasses.dataclass
class Subject:
    """What one benchmark works on: a size's source bytes, a folder for files, maybe a format's payload."""

    case: Case
    size_bytes: int
    folder: Path
    sources: list[torch.Tensor]
    payload: Optional[Payload] = None

    @property
    def source_bytes(self) -> int:
        return sum(s.numel() for s in self.sources)

    def path(self, stem: str) -> Path:
        suffix = self.payload.fmt.suffix if self.payload else ".bin"
        return self.folder / f"{stem}{suffix}"


@dataclasses.dataclass
class Timed:
    """An untimed setup before each round, the timed target, and a check after the last round."""

    target: Callable[[], None]
    setup: Callable[[], None] = lambda: None
    finish: Callable[[], Optional[str]] = lambda: None
    #: untimed, after each round: free what the round made (other subjects take their turns next)
    teardown: Callable[[], None] = lambda: None
    #: extra_info for the benchmark row (bytes moved, load mode, ...)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One timed operation: a format operation (``kind="format"``) or a baseline (``kind="baseline"``)."""

    name: str
    kind: str
    direction: str  # "save" or "load": which way the bytes go, for plots and pairing
    caches: tuple[str, ...]
    baseline: str  # the baseline this operation's throughput is reported against
    make: Callable[[Subject, str], Timed]
    unavailable: Callable[[Subject], Optional[str]] = lambda subject: None
    description: str = ""


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add an operation; names are unique."""
    if operation.name in OPERATIONS:
        raise ValueError(f"operation {operation.name!r} is registered twice")
    OPERATIONS[operation.name] = operation
    return operation


def by_kind(kind: str) -> list[Operation]:
    return [op for op in OPERATIONS.values() if op.kind == kind]


# -- page-cache state before each round -------------------------------------------------------

class CacheStateError(RuntimeError):
    """The file could not be put in the page-cache state a benchmark is labelled with."""


def prepare_cache(path: Path, cache: str) -> None:
    """Make ``path`` warm or cold before a round, verified; raise when it cannot be."""
    problem = pagecache.warm(path) if cache == "warm" else pagecache.drop(path)
    if problem:
        raise CacheStateError(f"{path.name} could not be made {cache}: {problem}")


# -- baselines --------------------------------------------------------------------------------

def _memcpy(subject: Subject, cache: str) -> Timed:
    targets = [torch.zeros_like(source) for source in subject.sources]  # zero-filled: pages already faulted

    def target() -> None:
        for destination, source in zip(targets, subject.sources):
            ctypes.memmove(destination.data_ptr(), source.data_ptr(), source.numel())

    def finish() -> Optional[str]:
        same = all(torch.equal(d, s) for d, s in zip(targets, subject.sources))
        return None if same else "memcpy destination differs from its source"

    return Timed(target, finish=finish, info={"bytes": subject.source_bytes})


def _write_raw(subject: Subject, path: Path, sync: bool) -> None:
    with open(path, "wb", buffering=0) as handle:
        for source in subject.sources:
            handle.write(memoryview(source.numpy().data))
        if sync:
            os.fsync(handle.fileno())


def _raw_write(sync: bool) -> Callable[[Subject, str], Timed]:
    def make(subject: Subject, cache: str) -> Timed:
        path = subject.folder / f"raw-write{'-fsync' if sync else ''}.bin"
        return Timed(lambda: _write_raw(subject, path, sync), setup=lambda: _unlink(path),
                     finish=lambda: _size_problem(path, subject.source_bytes), info={"bytes": subject.source_bytes})

    return make


def _raw_read(subject: Subject, cache: str) -> Timed:
    path = subject.folder / "raw-read.bin"
    if not path.exists():
        _write_raw(subject, path, sync=True)
    held: list[Any] = []
    wrong: list[int] = []

    def setup() -> None:
        held.clear()
        prepare_cache(path, cache)

    def target() -> None:  # like a load: fresh buffers, one per storage, filled from the file
        with open(path, "rb", buffering=0) as handle:
            for source in subject.sources:
                buffer = torch.empty(source.numel(), dtype=torch.uint8)
                handle.readinto(memoryview(buffer.numpy().data))
                held.append(buffer)

    def teardown() -> None:  # every round checked, then freed
        same = len(held) == len(subject.sources) and all(torch.equal(h, s) for h, s in zip(held, subject.sources))
        wrong.extend([] if same else [1])
        held.clear()

    def finish() -> Optional[str]:
        if held:
            teardown()
        return f"{len(wrong)} raw reads returned other bytes than were written" if wrong else None

    return Timed(target, setup=setup, finish=finish, teardown=teardown,
                 info={"bytes": subject.source_bytes, "file_bytes": subject.source_bytes})


# -- format operations ------------------------------------------------------------------------

def load_mode(fmt: Any) -> str:
    """The load mode a format is benchmarked with, the same in every release.

    ``weights_only=True`` for pickles of plain weights (the 2.6+ default, and the safe choice);
    ``weights_only=False`` for pickles of modules or arbitrary objects, which is safe here because
    the benchmark wrote the file itself in this run; the one loader for other formats.
    """
    if not fmt.pickled:
        return "default"
    if {"module", "extras"} & fmt.holds or not compat.has_weights_only():
        return "unsafe" if compat.has_weights_only() else "default"
    return "weights_only"


def _save(sync: bool) -> Callable[[Subject, str], Timed]:
    def make(subject: Subject, cache: str) -> Timed:
        payload = subject.payload
        path = subject.path("save-fsync" if sync else "save")

        def target() -> None:
            payload.fmt.save(payload.obj, path)
            if sync:
                pagecache.fsync(path)

        return Timed(target, setup=lambda: _unlink(path), finish=lambda: _exists_problem(path),
                     info={"bytes": payload.tensor_bytes})

    return make


def saved_file(subject: Subject) -> Path:
    """The file loads read: written once per subject by the format's own save, then synced."""
    path = subject.path("load")
    if not path.exists():
        subject.payload.fmt.save(subject.payload.obj, path)
        pagecache.fsync(path)
    return path


def _load(mapped: bool) -> Callable[[Subject, str], Timed]:
    def make(subject: Subject, cache: str) -> Timed:
        payload = subject.payload
        fmt, mode = payload.fmt, load_mode(payload.fmt)
        path = saved_file(subject)
        expected = touch(fmt.contents(payload.obj))
        sums: list[int] = []
        held: list[Any] = []

        def setup() -> None:
            held.clear()  # free the previous round's objects outside the timed region
            prepare_cache(path, cache)

        def target() -> None:
            with load_context(mapped):
                # written by this run
                loaded = fmt.open(path, LoadRequest(mode, cpu_location(fmt), case=payload.case, trusted=True))
            held.append(loaded)
            sums.append(touch(fmt.contents(loaded)))

        def finish() -> Optional[str]:
            held.clear()
            wrong = [s for s in sums if s != expected]
            return f"{len(wrong)} of {len(sums)} loads returned other bytes than were saved" if wrong else None

        return Timed(target, setup=setup, finish=finish, teardown=held.clear,
                     info={"bytes": payload.tensor_bytes, "file_bytes": path.stat().st_size, "load_mode": mode})

    return make


def cpu_location(fmt: Any) -> Any:
    """``'cpu'`` for loaders that take a map_location, None (load where saved: the CPU here) for the rest."""
    return "cpu" if "str" in fmt.capabilities.map_locations else None


def load_context(mapped: bool) -> ContextManager:
    """``torch.load`` maps files inside the block when ``mapped``; otherwise nothing changes."""
    return compat.MmapLoads() if mapped else contextlib.nullcontext()


def _mmap_unavailable(subject: Subject) -> Optional[str]:
    fmt = subject.payload.fmt
    if not fmt.pickled:
        return f"{fmt.name} is not a torch.load pickle: its one loader is the default load"
    reason = compat.mmap_load_unavailable()
    if reason:
        return reason
    if "mmap" not in fmt.capabilities.sources:
        return f"{fmt.name} writes the {fmt.capabilities.container} container, which torch.load(mmap=True) cannot map"
    return None


# -- small helpers ----------------------------------------------------------------------------

def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _exists_problem(path: Path) -> Optional[str]:
    return None if path.exists() and path.stat().st_size > 0 else f"{path.name} was not written"


def _size_problem(path: Path, size: int) -> Optional[str]:
    written = path.stat().st_size if path.exists() else -1
    return None if written == size else f"{path.name} holds {written} bytes, expected {size}"


WARM_COLD = ("warm", "cold")

register(Operation("memcpy", "baseline", "both", (NO_CACHE,), "memcpy", _memcpy,
                   description="ctypes.memmove of every payload storage into pre-faulted buffers"))
register(Operation("raw_write", "baseline", "save", (NO_CACHE,), "memcpy", _raw_write(sync=False),
                   description="one write() of the payload bytes into a new file, no fsync"))
register(Operation("raw_write_fsync", "baseline", "save", (NO_CACHE,), "memcpy", _raw_write(sync=True),
                   description="raw_write, then fsync"))
register(Operation("raw_read", "baseline", "load", WARM_COLD, "memcpy", _raw_read,
                   description="readinto fresh buffers, one per storage, from a file of the payload bytes"))
register(Operation("save", "format", "save", (NO_CACHE,), "raw_write", _save(sync=False),
                   description="the format's save into a new file (left in the page cache)"))
register(Operation("save_fsync", "format", "save", (NO_CACHE,), "raw_write_fsync", _save(sync=True),
                   description="the format's save, then fsync"))
register(Operation("load", "format", "load", WARM_COLD, "raw_read", _load(mapped=False),
                   description="the format's load, then every byte of every loaded tensor read"))
register(Operation("load_mmap", "format", "load", WARM_COLD, "raw_read", _load(mapped=True),
                   unavailable=_mmap_unavailable,
                   description="the format's load with torch.load(mmap=True), then every byte read"))
