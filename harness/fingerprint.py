"""Fingerprints of what a checkpoint holds: per-tensor metadata, byte hashes and storage sharing.

The producer fingerprints the objects it is about to save; the consumer fingerprints what it
loaded with the same functions, so the two are comparable without the producer's code path.
Hashing runs over each tensor's bytes in bulk (xxh3-128 over a memoryview): memory speed,
no per-element Python work.
"""

from __future__ import annotations

import argparse
import collections
import math
from typing import Any, Iterator, Mapping, Optional

import numpy
import torch
import xxhash

from harness import compat

TensorLike = Any  # torch.Tensor or numpy.ndarray


def hash_bytes(buffer: Any) -> str:
    """xxh3-128 hex digest of a bytes-like object."""
    return xxhash.xxh3_128(buffer).hexdigest()


def hash_file(path: Any, chunk: int = 16 * 1024 * 1024) -> str:
    """xxh3-128 of a file's contents, read in large chunks."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's logical bytes in row-major order (a view where it is already contiguous)."""
    data = tensor.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    if getattr(data, "is_conj", lambda: False)():
        data = data.resolve_conj()
    data = data.contiguous().reshape(-1)
    if data.numel() == 0:
        return memoryview(b"")
    return memoryview(data.view(torch.uint8).numpy().data)


def hash_tensor(tensor: TensorLike) -> str:
    """Hash of a tensor's (or ndarray's) bytes: equal hashes mean bit-identical values, NaNs included."""
    if isinstance(tensor, numpy.ndarray):
        return hash_bytes(numpy.ascontiguousarray(tensor).view(numpy.uint8).reshape(-1))
    return hash_bytes(tensor_bytes(tensor))


def is_tensor_leaf(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, numpy.ndarray))


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Walk dicts, sequences, Namespaces and modules, yielding ``(dotted path, leaf)`` pairs.

    Modules contribute their ``state_dict(keep_vars=True)``, so Parameters keep ``requires_grad``.
    """
    if is_tensor_leaf(obj):
        yield prefix, obj
    elif isinstance(obj, torch.nn.Module):
        yield from flatten(obj.state_dict(keep_vars=True), prefix)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from flatten(value, _join(prefix, str(key)))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from flatten(value, _join(prefix, str(index)))
    elif isinstance(obj, argparse.Namespace):
        yield from flatten(vars(obj), prefix)
    else:
        yield prefix, obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def scalar_repr(value: Any) -> Any:
    """A JSON value that identifies a non-tensor leaf (type and value)."""
    kind = type(value).__module__ + "." + type(value).__qualname__
    if isinstance(value, float) and math.isnan(value):
        return {"type": kind, "value": "nan"}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return {"type": kind, "value": value}
    if isinstance(value, numpy.generic):
        return {"type": kind, "value": repr(value.item())}
    return {"type": kind, "value": repr(value)[:200]}


def describe_tensor(tensor: TensorLike) -> dict[str, Any]:
    """dtype, shape, stride, requires_grad and hash of one tensor (or ndarray)."""
    if isinstance(tensor, numpy.ndarray):
        return {
            "dtype": f"numpy.{tensor.dtype}",
            "shape": list(tensor.shape),
            "stride": [s // max(tensor.itemsize, 1) for s in tensor.strides],
            "requires_grad": False,
            "hash": hash_tensor(tensor),
            "nbytes": int(tensor.nbytes),
        }
    return {
        "dtype": str(tensor.dtype),
        "shape": list(tensor.shape),
        "stride": list(tensor.stride()),
        "requires_grad": bool(tensor.requires_grad),
        "hash": hash_tensor(tensor),
        "nbytes": int(tensor.numel() * tensor.element_size()),
        "device": str(tensor.device),
    }


def fingerprint(obj: Any) -> dict[str, Any]:
    """The full fingerprint of a payload: tensors, sharing groups, scalars and byte bound.

    ``share_group`` names the first tensor (in walk order) of the storage a tensor lives in;
    ``view_bytes_bound`` is what the tensors need at least: per storage, the span they cover.
    """
    tensors: dict[str, dict[str, Any]] = {}
    scalars: dict[str, Any] = {}
    groups: dict[Any, str] = {}
    spans: dict[Any, list[int]] = {}
    for path, leaf in flatten(obj):
        if not is_tensor_leaf(leaf):
            scalars[path] = scalar_repr(leaf)
            continue
        info = describe_tensor(leaf)
        if isinstance(leaf, torch.Tensor):
            key = compat.storage_key(leaf)
            info["share_group"] = groups.setdefault(key, path)
            start = int(leaf.storage_offset()) * leaf.element_size()
            end = start + _span_bytes(leaf)
            span = spans.setdefault(key, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        else:
            info["share_group"] = path
            spans[("ndarray", path)] = [0, int(leaf.nbytes)]
        tensors[path] = info
    bound = sum(end - start for start, end in spans.values())
    return {"tensors": tensors, "scalars": scalars, "view_bytes_bound": bound}


def _span_bytes(tensor: torch.Tensor) -> int:
    if tensor.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return (last + 1) * tensor.element_size()


def sharing_groups(tensors: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Groups (of two or more names) whose tensors share one storage."""
    members: dict[str, list[str]] = collections.defaultdict(list)
    for name, info in tensors.items():
        members[info["share_group"]].append(name)
    return sorted(sorted(names) for names in members.values() if len(names) > 1)


def module_modes(obj: Any) -> Optional[dict[str, bool]]:
    """``{submodule name: training flag}`` for a module, else None."""
    if not isinstance(obj, torch.nn.Module):
        return None
    return {name or "<root>": bool(module.training) for name, module in obj.named_modules()}


def state_dict_metadata(state_dict: Any) -> Optional[dict[str, Any]]:
    """The ``_metadata`` (per-module versions) a state_dict carries, JSON-safe, or None."""
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is None:
        return None
    return {str(k): {str(a): b for a, b in dict(v).items()} for k, v in metadata.items()}


def optimizer_fingerprint(state: Mapping[str, Any]) -> dict[str, Any]:
    """Fingerprint of an optimizer ``state_dict()``: its state tensors and its param_groups."""
    groups = [
        {key: scalar_repr(value) if key != "params" else list(value) for key, value in group.items()}
        for group in state.get("param_groups", [])
    ]
    return {"state": fingerprint(state.get("state", {}))["tensors"], "param_groups": groups}


def collect_metadata(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{path: state_dict._metadata}`` for every state_dict inside ``obj`` that carries it."""
    found: dict[str, Any] = {}
    metadata = state_dict_metadata(obj)
    if metadata is not None:
        found[prefix or "<root>"] = metadata
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.update(collect_metadata(value, f"{prefix}.{key}" if prefix else str(key)))
    return found
