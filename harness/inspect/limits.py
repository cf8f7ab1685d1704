"""Limits on what inspecting one file may cost: sizes read, objects built, nesting, time, memory.

A hostile file is small and asks for much: a pickle declaring a 2**62-byte string, shared
references that expand to 2**60 objects, a zip entry that inflates to gigabytes. Every reader in
:mod:`harness.inspect` checks what the file *declares* against :class:`Limits` before acting on
it and raises :class:`InspectionLimit` (one line: which limit, what the file asked for). The time
and memory ceilings are enforced again from outside by :mod:`harness.inspect.isolated`, which
runs each inspection in a forked child, for whatever the checks here did not foresee.
"""

from __future__ import annotations

import dataclasses
import time
import zipfile

MB = 1024 * 1024


class InspectionLimit(Exception):
    """The file asks for more than the inspection allows; the message says what."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Ceilings for one file's inspection (defaults suit real checkpoints with room to spare)."""

    #: wall-clock seconds for the whole file
    seconds: float = 30.0
    #: address space the inspection may add, enforced on the forked child (RLIMIT_AS)
    memory_mb: int = 1024
    #: bytes of one pickle (a zip's data.pkl, a legacy stream's object pickle) read at most
    pickle_bytes: int = 64 * MB
    #: bytes read from any other zip entry or JSON header at most
    entry_bytes: int = 16 * MB
    #: decompressed/compressed ratio above which a zip entry is not inflated
    compression_ratio: int = 200
    #: pickle opcodes executed at most
    opcodes: int = 20_000_000
    #: objects the skeleton would hold with every shared reference expanded
    expanded_nodes: int = 2_000_000
    #: nesting depth of the skeleton
    depth: int = 500
    #: nodes of one dict key or set member (they are hashed, which recurses)
    key_nodes: int = 1000
    #: bytes of one pickled integer (LONG1/LONG4)
    long_bytes: int = 1024
    #: distinct globals one pickle may name
    globals: int = 10_000


DEFAULT = Limits()


class Budget:
    """A deadline for one file, checked by the loops that could run long."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise InspectionLimit(f"inspection took longer than its {self.limits.seconds:g} s budget")


def read_entry(archive: zipfile.ZipFile, name: str, limit: int, ratio_limit: int = DEFAULT.compression_ratio) -> bytes:
    """A zip entry's bytes, refusing before inflating one whose declared size or ratio is over the limits.

    The declared size can lie, so at most ``limit`` bytes are inflated whatever it says.
    """
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise InspectionLimit(f"zip entry {name!r} declares {info.file_size:,} bytes, over the {limit:,}-byte "
                              f"limit for entries the inspection reads")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MB and ratio > ratio_limit:
        raise InspectionLimit(f"zip entry {name!r} inflates {ratio:,.0f}:1 ({info.compress_size:,} → "
                              f"{info.file_size:,} bytes): a zip bomb; not inflated")
    with archive.open(info) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InspectionLimit(f"zip entry {name!r} inflates past the {limit:,}-byte limit (it declares "
                              f"{info.file_size:,}): a zip bomb; stopped reading")
    return data
