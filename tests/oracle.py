"""An independent oracle for :mod:`harness.fingerprint`: same question, none of its code.

``harness.fingerprint`` hashes a tensor's bytes with xxh3 after ``contiguous()``; here each element
is located by walking the tensor's sizes and strides over the raw bytes of its storage (numpy
index arithmetic, no ``contiguous``/``reshape`` of the tensor), and the bytes found are hashed
with SHA-256. Sharing comes from storage data pointers. When the two disagree about whether two
payloads hold the same tensors, one of them is wrong.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy
import torch


def element_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's elements in row-major order, found by a stride walk over its storage's bytes."""
    data = tensor.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    if data.is_conj():
        data = data.resolve_conj()
    if data.is_neg():
        data = data.resolve_neg()
    if data.numel() == 0:
        return b""
    storage = data.untyped_storage()
    raw = numpy.frombuffer(bytes(storage), dtype=numpy.uint8) if storage.nbytes() else numpy.zeros(0, numpy.uint8)
    itemsize = data.element_size()
    offsets = numpy.array(data.storage_offset(), dtype=numpy.int64)
    for size, stride in zip(data.shape, data.stride()):
        offsets = offsets[..., None] + numpy.arange(size, dtype=numpy.int64) * stride
    starts = offsets.reshape(-1) * itemsize
    return raw[starts[:, None] + numpy.arange(itemsize)].tobytes()


def digest(leaf: Any) -> tuple[str, tuple[int, ...], str]:
    """(dtype, shape, sha256 of the elements) of a tensor or ndarray."""
    if isinstance(leaf, numpy.ndarray):
        digest = hashlib.sha256(numpy.ascontiguousarray(leaf).tobytes()).hexdigest()
        return f"numpy.{leaf.dtype}", tuple(leaf.shape), digest
    return str(leaf.dtype), tuple(leaf.shape), hashlib.sha256(element_bytes(leaf)).hexdigest()


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) for every tensor and plain value in ``obj``."""
    if isinstance(obj, (torch.Tensor, numpy.ndarray)):
        yield path, obj
    elif isinstance(obj, torch.nn.Module):
        yield from leaves(obj.state_dict(keep_vars=True), path)
    elif isinstance(obj, argparse.Namespace):
        yield from leaves(vars(obj), path)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from leaves(value, f"{path}.{index}" if path else str(index))
    else:
        yield path, obj


def oracle(obj: Any) -> dict[str, Any]:
    """``{"tensors": {path: (dtype, shape, sha256)}, "values": {path: repr}, "shared": [[paths], ...]}``."""
    tensors, values, by_storage = {}, {}, {}
    for path, leaf in leaves(obj):
        if isinstance(leaf, (torch.Tensor, numpy.ndarray)):
            tensors[path] = digest(leaf)
            if isinstance(leaf, torch.Tensor) and leaf.numel() and leaf.device.type != "meta":
                by_storage.setdefault(leaf.untyped_storage().data_ptr(), []).append(path)
        else:
            values[path] = (type(leaf).__qualname__, repr(leaf))
    shared = sorted(sorted(paths) for paths in by_storage.values() if len(paths) > 1)
    return {"tensors": tensors, "values": values, "shared": shared}


def oracle_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """What differs between two oracles, one line each (empty when the payloads hold the same things)."""
    problems = [f"oracle: {path} missing" for path in sorted(set(expected["tensors"]) - set(actual["tensors"]))]
    problems += [f"oracle: {path} unexpected" for path in sorted(set(actual["tensors"]) - set(expected["tensors"]))]
    problems += [f"oracle: {path} {expected['tensors'][path]} != {actual['tensors'][path]}"
                 for path in sorted(expected["tensors"].keys() & actual["tensors"].keys())
                 if expected["tensors"][path] != actual["tensors"][path]]
    if expected["values"] != actual["values"]:
        problems.append("oracle: non-tensor values differ")
    if expected["shared"] != actual["shared"]:
        problems.append(f"oracle: sharing {expected['shared']} != {actual['shared']}")
    return problems
