"""Sharded safetensors in the Hugging Face layout: a folder of ``model-0000k-of-0000n.safetensors``
shards (header ``__metadata__ = {"format": "pt"}``) and ``model.safetensors.index.json``.

Saving keeps one name per shared tensor (a tied weight is stored once, whole, in one shard; the
model's own code re-ties it on load) and fills shards in state_dict order, never splitting a tensor.
Loading first holds the index and the shards to each other (:mod:`harness.containers.sharded`) — a
missing shard, a stale index or a tensor absent from the index is an error naming it — then loads
every shard into a fresh model; a weight the files do not supply, other than a re-tied alias, is an
error too, never a silently uninitialised parameter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case
from harness.containers import ContainerError, sharded
from harness.formats import Capabilities, Source, register
from harness.formats.safetensors_format import SafeTensors

#: shards per artifact the writer aims for (every case with a few tensors gets more than one)
TARGET_SHARDS = 3


def _view_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (compat.storage_key(tensor), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
            tensor.dtype)


def aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """``{alias: kept name}`` for names that are the very same tensor view as an earlier name."""
    first: dict[tuple[Any, ...], str] = {}
    found = {}
    for name, tensor in state.items():
        key = _view_key(tensor)
        if key in first:
            found[name] = first[key]
        else:
            first[key] = name
    return found


def split(state: dict[str, torch.Tensor], shards: int = TARGET_SHARDS) -> list[dict[str, torch.Tensor]]:
    """Whole tensors in state_dict order, into at most ``shards`` groups of about equal bytes."""
    total = sum(t.numel() * t.element_size() for t in state.values())
    limit = max(1, math.ceil(total / shards))
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > limit:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += nbytes
    return groups


def save_sharded(state: dict[str, torch.Tensor], folder: Path) -> None:
    """Write ``state`` (aliases dropped) as HF shards plus the index into the new folder ``folder``."""
    import safetensors.torch

    dropped = aliases(state)
    kept = {k: v.detach() for k, v in state.items() if k not in dropped}
    storages: dict[Any, int] = {}
    for tensor in kept.values():
        storages[compat.storage_key(tensor)] = storages.get(compat.storage_key(tensor), 0) + 1
    # a partial view of another kept tensor's storage is written as its own copy, and a transposed or
    # channels_last one in row-major order (safetensors refuses both as they are); the fresh model's
    # code makes them views and layouts again on load
    kept = {k: v.clone(memory_format=torch.contiguous_format) if storages[compat.storage_key(v)] > 1
            or not v.is_contiguous() else v for k, v in kept.items()}
    folder.mkdir()
    groups = split(kept)
    weight_map, total = {}, 0
    for k, group in enumerate(groups, start=1):
        name = sharded.shard_name(k, len(groups))
        safetensors.torch.save_file(group, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in group})
        total += sum(t.numel() * t.element_size() for t in group.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / sharded.INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")


def load_sharded(folder: Path, device: str) -> dict[str, torch.Tensor]:
    """Every tensor of every shard, after the index and the shards are found to agree."""
    import safetensors.torch

    problems = sharded.problems(folder)
    if problems:
        raise ContainerError(f"{len(problems)} problem(s) in {folder.name}: " + "; ".join(problems[:5]))
    state: dict[str, torch.Tensor] = {}
    for shard in sharded.shards(folder):
        state.update(safetensors.torch.load_file(str(folder / shard), device=device))
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` into ``model``; names the model ties to a supplied name may be absent, nothing else."""
    expected = model.state_dict()
    tied = aliases(expected)
    missing = [k for k in expected if k not in state and not (k in tied and tied[k] in state)]
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ContainerError(f"the shards do not match the model: missing {missing or 'none'}, "
                             f"unexpected {unexpected or 'none'}")
    model.load_state_dict(state, strict=False)
    return model


class ShardedSafeTensors(SafeTensors):
    """The single-file safetensors format's model payload, written as HF shards plus the index."""

    name = "sharded_safetensors"
    description = ("Hugging Face sharded safetensors folder: model-0000k-of-0000n.safetensors + "
                   "model.safetensors.index.json (no pickle)")
    suffix = ""
    capabilities = Capabilities(map_locations=frozenset({"none", "str"}), container="sharded_safetensors")

    def save(self, payload: Any, path: Path) -> None:
        save_sharded(payload.state_dict(), path)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        if case is None:
            raise RuntimeError("loading sharded safetensors into a model needs the case's model code")
        state = load_sharded(Path(str(source)), "cpu" if map_location is None else str(map_location))
        return load_into(case.fresh_models()["model"], state)


register(ShardedSafeTensors())
