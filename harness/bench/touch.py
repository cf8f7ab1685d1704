"""Touch every byte of every loaded tensor, so that a lazy load pays for what it deferred.

A load that maps the file (``mmap=True``, safetensors' ``safe_open``) returns before reading
anything; timing it alone measures nothing (a lazy safetensors load once showed "220 GB/s").
:func:`touch` reads every byte of every distinct storage and folds them into a checksum that is
returned, so the work cannot be skipped and a test can check that every byte was read.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from harness import compat
from harness.fingerprint import flatten

#: checksums are sums of int64 words, wrapped to this many bits
CHECKSUM_BITS = 64


def storages(obj: Any) -> Iterator[torch.Tensor]:
    """One flat ``uint8`` tensor over the bytes of each distinct storage under the tensors in ``obj``."""
    seen: set[Any] = set()
    for _, value in flatten(obj):
        if not isinstance(value, torch.Tensor) or value.device.type == "meta":
            continue
        key = compat.storage_key(value)
        if key in seen:
            continue
        seen.add(key)
        yield storage_bytes(value)


def storage_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The whole storage under ``tensor`` as a flat uint8 CPU tensor (no copy for CPU tensors)."""
    storage = compat.untyped_storage(tensor.detach())
    flat = torch.empty(0, dtype=torch.uint8, device=tensor.device)
    try:
        return flat.set_(storage, 0, (compat.storage_nbytes(tensor),), (1,))
    except (RuntimeError, TypeError):  # a typed storage (torch < 2.0): the tensor's own bytes
        return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def checksum(flat: torch.Tensor) -> int:
    """Sum of the bytes as little-endian int64 words (tail bytes added singly), wrapped to 64 bits.

    Summing int64 words runs at memory speed; summing single bytes is ~100x slower in torch.
    """
    words = flat.numel() // 8
    total = 0
    if words:
        total += int(flat[: words * 8].view(torch.int64).sum())
    if flat.numel() % 8:
        total += int(flat[words * 8:].to(torch.int64).sum())
    return total % (1 << CHECKSUM_BITS)


def touch(obj: Any) -> int:
    """Read every byte of every distinct tensor storage in ``obj``; return their combined checksum."""
    return sum(checksum(flat) for flat in storages(obj)) % (1 << CHECKSUM_BITS)


def touched_bytes(obj: Any) -> int:
    """How many bytes :func:`touch` reads for ``obj``."""
    return sum(flat.numel() for flat in storages(obj))
