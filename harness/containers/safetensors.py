"""safetensors: an 8-byte little-endian header length, a JSON header (``name -> {dtype, shape,
data_offsets}`` plus an optional ``__metadata__`` of strings), then the tensor bytes. No pickle."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Optional

from harness.containers import Container, ContainerError, register

#: headers larger than this are refused (safetensors itself caps them at 100 MB)
MAX_HEADER_BYTES = 100 * 1024 * 1024
METADATA = "__metadata__"
#: safetensors dtype names → torch dtype names
DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
          "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64", "U16": "uint16",
          "U32": "uint32", "U64": "uint64"}


def claims(first: bytes) -> bool:
    """An 8-byte header length, then a JSON object: ``{`` at offset 8 (the rest may be cut short)."""
    return len(first) >= 9 and first[8:9] == b"{"


def header(path: Path) -> dict[str, Any]:
    """The parsed JSON header; a length beyond the file or the cap, or a header that is not a JSON
    object, raises :class:`ContainerError`."""
    return _read_header(path)[1]


def _read_header(path: Path) -> tuple[int, dict[str, Any]]:
    size = Path(path).stat().st_size
    with open(path, "rb") as stream:
        start = stream.read(8)
        length = header_length(start, size)
        try:
            return length, parse_header(stream.read(length))
        except ContainerError as exc:
            raise ContainerError(f"{Path(path).name}: {exc}") from None


def header_length(start: bytes, size: int) -> int:
    """The header length the first 8 bytes declare, checked against the data's ``size`` and the cap."""
    if len(start) < 8:
        raise ContainerError(f"{size} bytes, too short for a safetensors header length")
    (length,) = struct.unpack("<Q", start[:8])
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise ContainerError(f"safetensors header length {length} exceeds the data ({size} bytes)")
    return length


def parse_header(text: bytes) -> dict[str, Any]:
    """The JSON header from its bytes; ContainerError when it is not a JSON object."""
    if not text.startswith(b"{"):
        raise ContainerError("safetensors header is not a JSON object")
    try:
        parsed = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContainerError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ContainerError("safetensors header is not a JSON object")
    return parsed


def header_problem(parsed: Any) -> Optional[str]:
    """What is wrong with a parsed header by the format's own rules (entries of dtype, shape and
    ``[begin, end]`` offsets; ``__metadata__`` of strings), or None."""
    if not isinstance(parsed, dict):
        return f"a JSON {type(parsed).__name__}, not an object"
    metadata = parsed.get(METADATA)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        return "__metadata__ is not an object of strings"
    for name, entry in parsed.items():
        if name == METADATA:
            continue
        label = repr(name[:80])
        if not isinstance(entry, dict):
            return f"tensor {label} is a JSON {type(entry).__name__}, not an object"
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            return f"tensor {label} has no string dtype"
        if not isinstance(shape, list) or not all(_natural(n) for n in shape):
            return f"tensor {label} has a shape that is not a list of non-negative integers"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_natural(n) for n in offsets)
                and offsets[0] <= offsets[1]):
            return f"tensor {label} has data_offsets that are not [begin, end] with 0 <= begin <= end"
    return None


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tensors(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The header's tensor entries (everything but ``__metadata__``)."""
    return {k: v for k, v in parsed.items() if k != METADATA and isinstance(v, dict)}


class SafeTensorsFile(Container):
    name = "safetensors"
    description = "safetensors file (JSON header, raw tensor bytes, no pickle)"
    loader = "safetensors"

    def claims(self, head: bytes) -> bool:
        return claims(head)

    def recognises(self, path: Path) -> bool:
        if not Path(path).is_file():
            return False
        try:
            header(path)
        except (ContainerError, OSError):
            return False
        return True

    def tensor_bytes(self, path: Path) -> int:
        return sum(end - start for entry in tensors(header(path)).values() for start, end in [entry["data_offsets"]])

    def problems(self, path: Path) -> list[str]:
        try:
            length, parsed = _read_header(path)
        except ContainerError as exc:
            return [str(exc)]
        problem = header_problem(parsed)
        if problem:
            return [f"{path.name}: safetensors header: {problem}"]
        end = max((e["data_offsets"][1] for e in tensors(parsed).values()), default=0)
        data = Path(path).stat().st_size - 8 - length
        return [] if end <= data else [f"{path.name}: tensor data ends at {end} but the file holds {data} data bytes"]


SAFETENSORS = SafeTensorsFile()
register(SAFETENSORS)
