"""safetensors: an 8-byte little-endian header length, a JSON header (``name -> {dtype, shape,
data_offsets}`` plus an optional ``__metadata__`` of strings), then the tensor bytes. No pickle."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from harness.containers import Container, ContainerError, register

#: headers larger than this are refused (safetensors itself caps them at 100 MB)
MAX_HEADER_BYTES = 100 * 1024 * 1024
METADATA = "__metadata__"


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


def tensors(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The header's tensor entries (everything but ``__metadata__``)."""
    return {k: v for k, v in parsed.items() if k != METADATA and isinstance(v, dict)}


class SafeTensorsFile(Container):
    name = "safetensors"
    description = "safetensors file (JSON header, raw tensor bytes, no pickle)"

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
        end = max((e["data_offsets"][1] for e in tensors(parsed).values()), default=0)
        data = Path(path).stat().st_size - 8 - length
        return [] if end <= data else [f"{path.name}: tensor data ends at {end} but the file holds {data} data bytes"]


SAFETENSORS = SafeTensorsFile()
register(SAFETENSORS)
