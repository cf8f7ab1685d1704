"""Oversized declared lengths: pickle string/bytes lengths, a storage's element count, zip local
and central sizes, the zip directory's size and offset, the safetensors header length and tensor
offsets, the legacy stream's storage sizes. The file stays small; only what it claims grows."""

from __future__ import annotations

import json
import random
import struct
from typing import Callable, Optional, cast

from harness.corrupt import Mutation, Mutator, Source, register
from harness.corrupt.layout import opcodes
from harness.corrupt.mutators._pickles import pickle_spans, splice

HUGE_32 = (0x7FFFFFFF, 0xFFFFFFFE, 0x10000000)
HUGE_64 = (2**40, 2**62, 2**63 - 1, 2**64 - 1)
CENTRAL_ENTRY = b"PK\x01\x02"


class Lengths(Mutator):
    name = "lengths"
    description = ("declare a length far larger than the file: pickle strings, storage sizes, zip and "
                   "safetensors headers")

    def kinds(self, source: Source) -> list[tuple[str, Callable]]:
        kinds: list[tuple[str, Callable]] = []
        if pickle_spans(source):
            kinds += [("pickle-string-length", _pickle_string_length), ("storage-numel", _storage_numel)]
        layout = source.layout
        if layout.kind == "zip":
            kinds += [("zip-local-size", _zip_local_size), ("zip-central-size", _zip_central_size),
                      ("zip-directory-size", _zip_directory_size)]
        if layout.kind == "safetensors":
            kinds += [("safetensors-header-length", _safetensors_header_length),
                      ("safetensors-data-offsets", _safetensors_offsets)]
        if layout.kind == "legacy":
            kinds += [("legacy-storage-size", _legacy_storage_size)]
        return kinds

    def applies(self, source: Source) -> bool:
        return bool(self.kinds(source))

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        kinds = self.kinds(source)
        kind, damage = kinds[index % len(kinds)]
        result = damage(source, rng)
        if result is None:
            return None
        where, data = result
        return self.make(kind, where, data)


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


def _pickle_string_length(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    span = pickle_spans(source)[0]
    sized = {"BINUNICODE": "<I", "BINBYTES": "<I", "BINSTRING": "<i", "SHORT_BINUNICODE": "<B",
             "SHORT_BINBYTES": "<B", "SHORT_BINSTRING": "<B", "BINUNICODE8": "<Q", "BINBYTES8": "<Q"}
    ops = [op for op in opcodes(source.data, span) if op[0] in sized]
    if not ops:
        return None
    name, _, offset = rng.choice(ops)
    fmt = sized[name]
    value = {"<B": 255, "<I": rng.choice(HUGE_32), "<i": 0x7FFFFFFF, "<Q": rng.choice(HUGE_64)}[fmt]
    piece = _patch(source.data[span[0]: span[1]], offset - span[0] + 1, fmt, value)
    return f"{offset}:{name}={value}", splice(source, span, piece)


def _storage_numel(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    """The element count in a storage's persistent id ``('storage', type, key, location, numel)``."""
    span = pickle_spans(source)[0]
    ops = opcodes(source.data, span)
    counts = [ops[i] for i in range(len(ops) - 2)
              if ops[i][0] in ("BININT1", "BININT2", "BININT") and ops[i + 1][0].startswith("TUPLE")
              and ops[i + 2][0] in ("BINPERSID", "PERSID")]
    if not counts:
        return None
    name, value, offset = rng.choice(counts)
    fmt = {"BININT1": "<B", "BININT2": "<H", "BININT": "<i"}[name]
    count = cast(int, value)  # BININT* arguments are ints
    new = {"<B": 255, "<H": 65535, "<i": rng.choice((0x7FFFFFFF, 0x10000000, count * 1000 % 2**31))}[fmt]
    piece = _patch(source.data[span[0]: span[1]], offset - span[0] + 1, fmt, new)
    return f"{offset}:numel {value}->{new}", splice(source, span, piece)


def _zip_local_size(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    entry = rng.choice(source.layout.entries)
    field = rng.choice((18, 22))  # compressed size, uncompressed size
    value = rng.choice(HUGE_32)
    return f"{entry.name}+{field}={value}", _patch(source.data, entry.header_offset + field, "<I", value)


def _zip_central_size(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    start, end = source.layout.region("central-directory") or (0, 0)
    offsets, at = [], source.data.find(CENTRAL_ENTRY, start, end)
    while at >= 0:
        offsets.append(at)
        at = source.data.find(CENTRAL_ENTRY, at + 4, end)
    if not offsets:
        return None
    at = rng.choice(offsets)
    field = rng.choice((20, 24, 42))  # compressed size, uncompressed size, local header offset
    value = rng.choice(HUGE_32)
    return f"central@{at}+{field}={value}", _patch(source.data, at + field, "<I", value)


def _zip_directory_size(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    eocd = source.data.rfind(b"PK\x05\x06")
    if eocd < 0:
        return None
    field = rng.choice((12, 16))  # size of the central directory, its offset
    value = rng.choice(HUGE_32)
    return f"eocd+{field}={value}", _patch(source.data, eocd + field, "<I", value)


def _safetensors_header_length(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    value = rng.choice(HUGE_64 + (len(source.data), len(source.data) - 7))
    return f"header-length={value}", _patch(source.data, 0, "<Q", value)


def _safetensors_offsets(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    start, end = source.layout.span("header")
    header = json.loads(source.data[start:end])
    names = sorted(k for k in header if k != "__metadata__")
    if not names:
        return None
    name = rng.choice(names)
    value = rng.choice(HUGE_64[:1] + (2**53, source.layout.size * 1000))
    header[name]["data_offsets"][rng.randrange(2)] = value
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return f"{name}.data_offsets={value}", struct.pack("<Q", len(text)) + text + source.data[end:]


def _legacy_storage_size(source: Source, rng: random.Random) -> Optional[tuple[str, bytes]]:
    start, end = source.layout.region("tensor-data") or (0, 0)
    if end - start < 8:
        return None
    value = rng.choice(HUGE_64)
    return f"first-storage-count={value}", _patch(source.data, start, "<Q", value)


register(Lengths())
