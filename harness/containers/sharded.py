"""Sharded safetensors in the Hugging Face layout: a folder of ``model-0000k-of-0000n.safetensors``
shards and ``model.safetensors.index.json`` = ``{"metadata": {"total_size": N}, "weight_map":
{tensor name: shard file}}``.

:func:`problems` holds the index and the shards to each other before anything is loaded: a shard the
index names but the folder lacks, a tensor the index maps to a shard that does not hold it (a stale
index), a tensor a shard holds that the index does not list, a shard nobody lists, or a total size
that does not add up. Each is an error naming the file or tensor, never a weight left uninitialised.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.containers import Container, ContainerError, register
from harness.containers import safetensors as single

INDEX_NAME = "model.safetensors.index.json"
SHARD_PATTERN = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")
#: index files larger than this are refused
MAX_INDEX_BYTES = 64 * 1024 * 1024


def shard_name(k: int, n: int) -> str:
    """The Hugging Face name of shard ``k`` (1-based) of ``n``."""
    return f"model-{k:05d}-of-{n:05d}.safetensors"


def read_index(folder: Path) -> dict[str, Any]:
    """The parsed index; a missing, oversized or malformed one raises :class:`ContainerError`."""
    path = Path(folder) / INDEX_NAME
    if not path.is_file() or path.is_symlink():
        raise ContainerError(f"{folder}: no {INDEX_NAME}")
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise ContainerError(f"{path}: {path.stat().st_size} bytes, larger than an index can be")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContainerError(f"{path}: not JSON: {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ContainerError(f"{path}: no weight_map of tensor name -> shard file")
    for shard in set(weight_map.values()):
        if Path(shard).name != shard or shard in (".", ".."):
            raise ContainerError(f"{path}: shard {shard!r} is not a file name inside the folder")
    return index


def shards(folder: Path) -> list[str]:
    """The shard files the index names, in order."""
    return sorted(set(read_index(folder)["weight_map"].values()))


def problems(folder: Path) -> list[str]:
    """Everything that keeps the index and the shards from describing the same tensors."""
    folder = Path(folder)
    try:
        index = read_index(folder)
    except ContainerError as exc:
        return [str(exc)]
    weight_map: dict[str, str] = index["weight_map"]
    found: list[str] = []
    stored_bytes = 0
    for shard in sorted(set(weight_map.values())):
        path = folder / shard
        if not path.is_file() or path.is_symlink():
            found.append(f"missing shard {shard} (the index maps {sum(v == shard for v in weight_map.values())} "
                         "tensors to it)")
            continue
        try:
            held = single.tensors(single.header(path))
        except ContainerError as exc:
            found.append(str(exc))
            continue
        stored_bytes += sum(e["data_offsets"][1] - e["data_offsets"][0] for e in held.values())
        listed = {name for name, where in weight_map.items() if where == shard}
        found += [f"stale index: {name} is mapped to {shard}, which does not hold it"
                  for name in sorted(listed - set(held))]
        found += [f"{name} in {shard} is absent from the index" for name in sorted(set(held) - listed)]
    unlisted = sorted(p.name for p in folder.glob("*.safetensors") if p.name not in set(weight_map.values()))
    found += [f"shard {name} is in the folder but not in the index" for name in unlisted]
    total = (index.get("metadata") or {}).get("total_size")
    if not found and total is not None and total != stored_bytes:
        found.append(f"stale index: metadata.total_size is {total} but the shards hold {stored_bytes} tensor bytes")
    return found


class ShardedSafeTensors(Container):
    name = "sharded_safetensors"
    description = "Hugging Face sharded safetensors folder (model-0000k-of-0000n.safetensors + index.json)"
    folder = True
    loader = "sharded_safetensors"

    def recognises(self, path: Path) -> bool:
        return (Path(path) / INDEX_NAME).is_file()

    def loader_args(self, path: Path) -> dict[str, str]:
        return {"index": INDEX_NAME}

    def tensor_bytes(self, path: Path) -> int:
        return sum(single.SAFETENSORS.tensor_bytes(Path(path) / shard) for shard in shards(path))

    def problems(self, path: Path) -> list[str]:
        return problems(path)


SHARDED = ShardedSafeTensors()
register(SHARDED)
