"""Payload sizes on the command line: ``1MB,64MB,512MB`` (binary units: 1 MB = 2**20 bytes)."""

from __future__ import annotations

import re

from harness.errors import HarnessError

UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
DEFAULT_SIZES = "1MB,64MB,512MB"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in one size such as ``64MB``; bad text raises HarnessError saying what is accepted."""
    match = _SIZE.match(text)
    if not match:
        raise HarnessError(f"size {text!r} is not understood: write a number and a unit, e.g. 1MB, 512KB or 2GB")
    nbytes = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if nbytes < 4096:
        raise HarnessError(f"size {text!r} is below 4KB: a payload must hold at least one page")
    return nbytes


def parse_sizes(text: str) -> list[int]:
    """Bytes of each comma-separated size, in the order given, without repeats."""
    sizes: list[int] = []
    for part in text.split(","):
        if part.strip():
            nbytes = parse_size(part)
            if nbytes not in sizes:
                sizes.append(nbytes)
    if not sizes:
        raise HarnessError("--sizes is empty: give at least one size, e.g. --sizes 64MB")
    return sizes


def label(nbytes: int) -> str:
    """The shortest exact label of a size: ``1MB``, ``512KB``, ``3000B``."""
    for unit in ("GB", "MB", "KB"):
        if nbytes % UNITS[unit] == 0:
            return f"{nbytes // UNITS[unit]}{unit}"
    return f"{nbytes}B"
