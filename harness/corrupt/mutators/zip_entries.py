"""Zip entries removed, renamed or duplicated; the archive is rewritten with :mod:`zipfile` into
new bytes (a plain rewrite with no change is the control: it shows what rewriting alone does)."""

from __future__ import annotations

import io
import random
import warnings
import zipfile
from typing import Optional

from harness.corrupt import Mutation, Mutator, Source, register

KINDS = ("remove", "rename", "duplicate", "duplicate-different", "rewrite-unchanged")


def read_entries(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def write_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """A new stored (uncompressed) archive; duplicate names are written as given."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of the duplicate mutation
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, payload in entries:
                archive.writestr(name, payload)
    return buffer.getvalue()


class ZipEntries(Mutator):
    name = "zip-entries"
    description = "remove, rename or duplicate one zip entry (or rewrite the archive unchanged, as a control)"

    def applies(self, source: Source) -> bool:
        return source.layout.kind == "zip"

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        entries = [(info.filename, payload) for info, payload in read_entries(source.data)]
        kind = KINDS[index % len(KINDS)]
        pick = rng.randrange(len(entries))
        name, payload = entries[pick]
        if kind == "remove":
            del entries[pick]
        elif kind == "rename":
            entries[pick] = (_renamed(name, rng), payload)
        elif kind == "duplicate":
            entries.insert(rng.randrange(len(entries) + 1), (name, payload))
        elif kind == "duplicate-different":
            entries.append((name, bytes(reversed(payload)) if payload else b"\x00"))
        return self.make(kind, name, write_entries(entries))


def _renamed(name: str, rng: random.Random) -> str:
    """Another plausible name: a changed last character, a changed extension or another folder."""
    choice = rng.randrange(3)
    if choice == 0 and name:
        return name[:-1] + ("x" if name[-1] != "x" else "y")
    if choice == 1:
        return name + ".bak"
    head, _, tail = name.rpartition("/")
    return f"{head}/renamed/{tail}" if head else f"renamed/{tail}"


register(ZipEntries())
