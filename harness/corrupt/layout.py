"""Where things are inside a checkpoint file: zip structures, pickles, tensor bytes.

Mutators aim at these regions (a cut inside the zip central directory, a flip inside tensor data,
an opcode inside ``data.pkl``). Parsing only reads bytes; no pickle is ever executed.
"""

from __future__ import annotations

import dataclasses
import io
import pickletools
import struct
import zipfile
from typing import Optional

from harness.containers import ContainerError, _zip
from harness.containers import safetensors as safetensors_container
from harness.containers._zip import tensor_record
from harness.containers.legacy import LEGACY
from harness.containers.legacy import pickle_spans as legacy_pickle_spans


@dataclasses.dataclass(frozen=True)
class Entry:
    """One zip entry: its name, where its local header starts and where its bytes are."""

    name: str
    header_offset: int
    data_start: int
    size: int


@dataclasses.dataclass
class Layout:
    """The regions of one file: ``kind`` is zip, legacy (torch's pre-1.6 stream), safetensors or raw."""

    kind: str
    size: int
    #: name -> (start, end) byte ranges, e.g. "central-directory", "tensor-data", "pickle"
    regions: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    entries: list[Entry] = dataclasses.field(default_factory=list)
    #: (start, end) of each pickle stream in the file (zip: stored *.pkl entries; legacy: the stream)
    pickles: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def region(self, name: str) -> Optional[tuple[int, int]]:
        """The non-empty byte range called ``name``, or None."""
        span = self.regions.get(name)
        return span if span and span[1] > span[0] else None

    def span(self, name: str) -> tuple[int, int]:
        """The byte range called ``name`` where the caller knows it is there (a KeyError names it if not)."""
        found = self.region(name)
        if found is None:
            raise KeyError(f"{self.kind} layout has no {name} region")
        return found


def describe(data: bytes) -> Layout:
    """The layout of ``data``, by content (not by file name)."""
    if _zip.claims(data):
        try:
            return _zip_layout(data)
        except (zipfile.BadZipFile, ValueError, struct.error):
            pass
    safetensors = _safetensors_layout(data)
    if safetensors:
        return safetensors
    legacy = _legacy_layout(data)
    return legacy or Layout("raw", len(data), {"all": (0, len(data))})


def _zip_layout(data: bytes) -> Layout:
    eocd = data.rfind(_zip.EOCD)
    if eocd < 0:
        raise ValueError("no end of central directory")
    archive = zipfile.ZipFile(io.BytesIO(data))
    cd_start = data.rfind(_zip.ZIP64_EOCD, 0, eocd)
    entries, tensors, pickles = [], [], []
    for info in archive.infolist():
        name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        entries.append(Entry(info.filename, info.header_offset, start, info.compress_size))
        if info.filename.endswith(".pkl") and info.compress_type == zipfile.ZIP_STORED:
            pickles.append((start, start + info.compress_size))
        if tensor_record(info.filename):
            tensors.append((start, start + info.compress_size))
    central = archive.start_dir if hasattr(archive, "start_dir") else min(e.header_offset for e in entries)
    regions = {
        "local-entries": (0, central),
        "central-directory": (central, cd_start if cd_start > central else eocd),
        "end-of-central-directory": (cd_start if cd_start > central else eocd, len(data)),
    }
    if tensors:
        regions["tensor-data"] = (min(s for s, _ in tensors), max(e for _, e in tensors))
    if pickles:
        regions["pickle"] = pickles[0]
    return Layout("zip", len(data), regions, entries, pickles)


def _safetensors_layout(data: bytes) -> Optional[Layout]:
    try:
        header_len = safetensors_container.header_length(data[:8], len(data))
        safetensors_container.parse_header(data[8: 8 + header_len])
    except ContainerError:
        return None
    end = 8 + header_len
    return Layout("safetensors", len(data),
                  {"header-length": (0, 8), "header": (8, end), "tensor-data": (end, len(data))})


def _legacy_layout(data: bytes) -> Optional[Layout]:
    """torch's legacy stream: five pickles (magic, protocol, sys info, object, storage keys), then storages."""
    if not LEGACY.claims(data[:64]):
        return None
    stream = io.BytesIO(data)
    try:
        pickles = legacy_pickle_spans(stream)
    except Exception:
        return None
    end = pickles[-1][1]
    return Layout("legacy", len(data), {"pickles": (0, end), "pickle": pickles[3], "storage-keys": pickles[4],
                                        "tensor-data": (end, len(data))}, pickles=pickles)


def opcodes(data: bytes, span: tuple[int, int]) -> list[tuple[str, object, int]]:
    """``(opcode name, argument, absolute offset)`` of every opcode in the pickle at ``span``."""
    start, end = span
    return [(op.name, arg, start + int(pos or 0)) for op, arg, pos in pickletools.genops(data[start:end])]


#: classes numpy builds through ``numpy.dtype`` calls, which no GLOBAL opcode names
NUMPY_DTYPE_CLASSES = ("numpy.dtypes.UInt32DType", "numpy.dtypes.Float64DType", "numpy.dtypes.Int64DType")


def pickle_globals(data: bytes, layout: Layout) -> list[str]:
    """``module.name`` of every global the file's pickles import (GLOBAL, and STACK_GLOBAL after two
    string pushes), read from the opcodes without unpickling; numpy dtype classes added when numpy
    is imported. These are what a weights_only load of the *original* file needs allowed."""
    found: set[str] = set()
    for span in layout.pickles:
        strings: list[str] = []
        for name, arg, _ in opcodes(data, span):
            if name == "GLOBAL":
                found.add(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str):
                strings.append(arg)
    if any(name.startswith("numpy") for name in found):
        found.update(NUMPY_DTYPE_CLASSES)
    return sorted(found)
