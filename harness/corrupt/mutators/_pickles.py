"""Shared by the pickle mutators: find the pickles of a file and put an edited one back."""

from __future__ import annotations

from harness.corrupt import Source
from harness.corrupt.mutators.zip_entries import read_entries, write_entries


def pickle_spans(source: Source) -> list[tuple[int, int]]:
    """Byte ranges of the pickles worth damaging (legacy: the object pickle first)."""
    layout = source.layout
    if layout.kind == "legacy":
        spans = list(layout.pickles)
        return [spans[3]] + spans[:3] + spans[4:]
    return list(layout.pickles)


def splice(source: Source, span: tuple[int, int], new_pickle: bytes) -> bytes:
    """``source.data`` with the pickle at ``span`` replaced by ``new_pickle`` (any length).

    In a zip an edit of the same length is made in place (the stale CRC is part of the damage); a
    length change rewrites the archive so the entry's declared sizes stay consistent.
    """
    start, end = span
    data = source.data
    if source.layout.kind != "zip" or len(new_pickle) == end - start:
        return data[:start] + new_pickle + data[end:]
    entry = next(e for e in source.layout.entries if e.data_start == start)
    return write_entries([(info.filename, new_pickle if info.filename == entry.name else payload)
                          for info, payload in read_entries(data)])
