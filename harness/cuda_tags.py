"""CUDA-tagged copies of CPU checkpoints, made without a GPU, and read back to prove it.

``torch.save`` records each storage's device in a persistent id inside the pickle:
``('storage', <storage type>, key, location, numel[, view metadata])``. In the zip container that
pickle is the ``data.pkl`` record; in the legacy stream it is the fourth of its pickles. This
module rewrites ``location`` (``'cpu'`` → ``'cuda:0'``, say) opcode by opcode — nothing is
unpickled, no code runs — and writes the result to a new file; the original is never touched.
:func:`storage_locations` reads the records back the same way, and :class:`LocationObserver`
shows the locations torch itself sees while loading.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import io
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from harness.containers import ContainerError
from harness.containers.legacy import LEGACY
from harness.containers.torch_zip import TORCH_ZIP, data_pkl, read_pickle

#: memo-storing opcodes; each names (or, MEMOIZE, implies) the memo slot of the value just pushed
_MEMO_PUT = {"BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"}
_MEMO_GET = {"BINGET", "LONG_BINGET", "GET"}
_STRINGS = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE"}


class TagError(Exception):
    """The pickle is laid out in a way this rewriter does not know; nothing was written."""


@dataclasses.dataclass(frozen=True)
class StorageRecord:
    """One storage's persistent id as written: its key in the file and its device location."""

    key: str
    location: str


@dataclasses.dataclass(frozen=True)
class _Op:
    name: str
    arg: Any
    start: int
    end: int


@functools.lru_cache(maxsize=4)
def _parsed(data: bytes) -> tuple[tuple[_Op, ...], tuple[_Site, ...]]:
    """The op stream of a pickle and its storage sites, parsed once per distinct pickle: a CUDA-tagged copy
    reads the original's records and rewrites the same bytes, twice (cuda:0 and cuda:1), and pickletools
    walks a big pickle slowly (about half of ``cuda_tagged``'s time was these repeated walks)."""
    ops = _walk(data)
    return tuple(ops), tuple(_sites(ops))


def _walk(data: bytes) -> list[_Op]:
    found = list(pickletools.genops(data))
    ends = [pos for _, _, pos in found[1:]] + [len(data)]
    return [_Op(op.name, arg, int(pos or 0), int(end or 0)) for (op, arg, pos), end in zip(found, ends, strict=True)]


@dataclasses.dataclass(frozen=True)
class _Site:
    key: str
    location: str
    literal: int  # index of the op that holds the location string


def _sites(ops: list[_Op]) -> list[_Site]:
    """Every storage persistent id in the op stream, with the op holding its location string."""
    memo: dict[int, int] = {}
    marks: list[int] = []
    closes: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.name == "MARK":
            marks.append(i)
        elif op.name in ("TUPLE", "LIST", "DICT", "SETITEMS", "APPENDS", "OBJ", "INST", "POP_MARK", "FROZENSET",
                         "ADDITEMS"):
            if not marks:
                raise TagError(f"unbalanced MARK at byte {op.start}")
            closes[i] = marks.pop()
        if op.name in _MEMO_PUT:
            slot = len(memo) if op.name == "MEMOIZE" else int(op.arg)
            memo[slot] = _pushed_by(ops, i)
    sites = []
    for i, op in enumerate(ops):
        if op.name != "BINPERSID":
            continue
        j = i - 1
        while j >= 0 and ops[j].name in _MEMO_PUT:
            j -= 1
        if j < 0 or ops[j].name != "TUPLE":
            raise TagError(f"persistent id at byte {op.start} is not a MARK…TUPLE tuple")
        elements = _top_level(ops, closes[j] + 1, j, 4)
        values = [_value(ops, e, memo) for e in elements]
        if values[0][0] != "storage":
            continue  # another kind of persistent id (not written by torch.save's storage records)
        if not isinstance(values[2][0], str) or not isinstance(values[3][0], str):
            raise TagError(f"storage record at byte {op.start} has no string key and location")
        sites.append(_Site(key=values[2][0], location=values[3][0], literal=values[3][1]))
    return sites


def _pushed_by(ops: list[_Op], put: int) -> int:
    j = put - 1
    while j >= 0 and ops[j].name in _MEMO_PUT:
        j -= 1
    return j


def _top_level(ops: list[_Op], start: int, stop: int, count: int) -> list[int]:
    """Indices of the first ``count`` single-op elements between a MARK and its TUPLE."""
    elements: list[int] = []
    i = start
    while i < stop and len(elements) < count:
        if ops[i].name in _MEMO_PUT:
            i += 1
            continue
        if ops[i].name not in _STRINGS | _MEMO_GET | {"GLOBAL"}:
            raise TagError(f"storage record element {len(elements) + 1} at byte {ops[i].start} is {ops[i].name}, "
                           "not a string, a global or a memo reference")
        elements.append(i)
        i += 1
    if len(elements) < count:
        raise TagError("storage record has fewer than four elements")
    return elements


def _value(ops: list[_Op], index: int, memo: dict[int, int]) -> tuple[Any, int]:
    """``(value, index of the op that wrote it)``, following memo references."""
    op = ops[index]
    if op.name in _MEMO_GET:
        slot = int(op.arg)
        if slot not in memo:
            raise TagError(f"memo reference {slot} at byte {op.start} was never stored")
        return _value(ops, memo[slot], memo)
    return op.arg, index


def _encode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE, understood by every pickle protocol ≥ 1


def retag_pickle(data: bytes, location: str) -> bytes:
    """The same pickle with every storage record's location set to ``location``.

    A location string is usually written once and referenced from the memo afterwards; it is
    rewritten where it is written. If that string is also used for something other than a storage
    location, rewriting it would change data: that raises :class:`TagError` instead.
    """
    parsed, found = _parsed(data)
    ops, sites = list(parsed), list(found)
    if not sites:
        raise TagError("no storage records in this pickle")
    literals = {site.literal for site in sites}
    _refuse_shared_literals(ops, literals, sites)
    out = io.BytesIO()
    for i, op in enumerate(ops):
        out.write(_encode(location) if i in literals else data[op.start:op.end])
    return out.getvalue()


def _refuse_shared_literals(ops: list[_Op], literals: set[int], sites: list[_Site]) -> None:
    memo: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.name in _MEMO_PUT:
            memo[len(memo) if op.name == "MEMOIZE" else int(op.arg)] = _pushed_by(ops, i)
    uses = {index: 0 for index in literals}
    for i, op in enumerate(ops):
        target = memo.get(int(op.arg)) if op.name in _MEMO_GET else i
        if target in uses:
            uses[target] += 1
    if any(count > len(sites) for count in uses.values()):
        raise TagError("a location string is shared with other data in the pickle")
    if sum(uses.values()) != len(sites):
        raise TagError("location strings are used outside storage records")


def storage_locations(path: Path) -> list[StorageRecord]:
    """The storage records of a checkpoint as written (zip or legacy), read without unpickling."""
    path = Path(path)
    if TORCH_ZIP.recognises(path):
        try:
            return _records(read_pickle(path))
        except ContainerError as exc:
            raise TagError(str(exc)) from None
    if LEGACY.recognises(path):
        start, end = LEGACY.object_pickle(path)
        with open(path, "rb") as stream:
            stream.seek(start)
            return _records(stream.read(end - start))
    raise TagError(f"{path.name} is neither torch.save's zip container nor its legacy stream")


def _records(data: bytes) -> list[StorageRecord]:
    return [StorageRecord(site.key, site.location) for site in _parsed(data)[1]]


def retag(source: Path, target: Path, location: str) -> list[StorageRecord]:
    """Write a copy of ``source`` whose storages are all tagged ``location``; return them as read back."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise TagError("refusing to rewrite a checkpoint in place")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if TORCH_ZIP.recognises(source):
            _retag_zip(source, target, location)
        elif LEGACY.recognises(source):
            _retag_legacy(source, target, location)
        else:
            raise TagError(f"{source.name} is neither torch.save's zip container nor its legacy stream")
    except BaseException:
        target.unlink(missing_ok=True)  # no half-written copy is left to be mistaken for a checkpoint
        raise
    return storage_locations(target)


def _data_pkl(archive: zipfile.ZipFile) -> str:
    try:
        return data_pkl(archive)
    except ContainerError as exc:
        raise TagError(str(exc)) from None


ALIGNMENT = 64  # torch.save aligns record data to 64 bytes (mmap=True maps it in place)


def _retag_zip(source: Path, target: Path, location: str) -> None:
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        pickle_name = _data_pkl(archive)
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == pickle_name:
                data = retag_pickle(data, location)
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.compress_type = zipfile.ZIP_STORED
            entry.extra = _padding(out.fp.tell(), info.filename)  # type: ignore[union-attr]
            out.writestr(entry, data)


def _padding(offset: int, name: str) -> bytes:
    """An extra field that puts the record's data on a 64-byte boundary, as torch.save does."""
    header = 30 + len(name.encode("utf-8"))
    size = (-(offset + header + 4)) % ALIGNMENT
    return struct.pack("<HH", 0x4246, size) + b"Z" * size  # 'FB' padding, torch's own id


def _retag_legacy(source: Path, target: Path, location: str) -> None:
    start, end = LEGACY.object_pickle(source)
    with open(source, "rb") as stream:
        head = stream.read(start)
        rewritten = retag_pickle(stream.read(end - start), location)
        with open(target, "wb") as out:
            out.write(head)
            out.write(rewritten)
            while True:
                block = stream.read(16 * 1024 * 1024)
                if not block:
                    break
                out.write(block)


# -- what torch sees ------------------------------------------------------------------------------


_SEEN: contextvars.ContextVar[Optional[list[str]]] = contextvars.ContextVar("ckpt_harness_locations", default=None)
_OBSERVER_PRIORITY = -4242  # before every real device (cpu is 10): sees every restore first


def _observe(storage: Any, location: str) -> None:
    seen = _SEEN.get()
    if seen is not None:
        seen.append(location)
    return None  # never restores anything: the real deserializers run next


def _never_tags(storage: Any) -> None:
    return None


_registered = False


@contextlib.contextmanager
def observed_locations() -> Iterator[list[str]]:
    """Collect the location every storage is restored to during loads inside the block.

    The location is what reaches torch's device deserializers, after ``map_location`` (a string,
    a device or a dict) has been applied. Registered once per process as a torch.serialization
    package that tags nothing and restores nothing, so loads outside the block are unaffected.
    """
    global _registered
    if not _registered:
        torch.serialization.register_package(_OBSERVER_PRIORITY, _never_tags, _observe)
        _registered = True
    seen: list[str] = []
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)
