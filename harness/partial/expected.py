"""What ``load_state_dict`` should report, computed from the two architectures alone.

The target's keys come from walking its modules the way a state_dict is built: every child under
every name (shared children too), every parameter that is not None, every buffer that is not None
and not in ``_non_persistent_buffers_set``, and ``_extra_state`` where a module overrides
``get_extra_state``. Nothing here calls ``load_state_dict`` or ``state_dict``: the point is to
know the right answer independently and hold every torch release to it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

import torch
from torch import nn

Shape = tuple[int, ...]


def target_entries(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(key, tensor)`` for every entry a state_dict of ``model`` holds, in state_dict order."""
    for name, param in model._parameters.items():
        if param is not None:
            yield prefix + name, param
    non_persistent: set[str] = getattr(model, "_non_persistent_buffers_set", set())
    for name, buffer in model._buffers.items():
        if buffer is not None and name not in non_persistent:
            yield prefix + name, buffer
    if type(model).get_extra_state is not nn.Module.get_extra_state:
        yield prefix + "_extra_state", None
    for name, child in model._modules.items():
        if child is not None:
            yield from target_entries(child, f"{prefix}{name}.")


def target_shapes(model: nn.Module) -> dict[str, Shape]:
    """``{key: shape}`` of what ``model`` expects (``()`` for extra state)."""
    return {key: tuple(t.shape) if isinstance(t, torch.Tensor) else () for key, t in target_entries(model)}


def non_persistent_buffers(model: nn.Module, prefix: str = "") -> list[str]:
    """Dotted names of the buffers a state_dict leaves out (they stay as ``__init__`` made them)."""
    names = [prefix + n for n in sorted(getattr(model, "_non_persistent_buffers_set", set()))
             if model._buffers.get(n) is not None]
    for name, child in model._modules.items():
        if child is not None:
            names += non_persistent_buffers(child, f"{prefix}{name}.")
    return names


def source_shapes(state: Mapping[str, Any]) -> dict[str, Shape]:
    """``{key: shape}`` of a checkpoint's state_dict (non-tensor entries count as shape ``()``)."""
    return {key: tuple(v.shape) if isinstance(v, torch.Tensor) else () for key, v in state.items()}


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """What loading a source state_dict into a target model must report."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    #: key -> (shape in the checkpoint, shape in the model)
    mismatched: dict[str, tuple[Shape, Shape]]
    #: keys whose values must arrive (present on both sides with the same shape)
    loaded: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """A strict load must succeed."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line: counts and the first few names of each kind."""
        parts = [f"{len(self.loaded)} loaded"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("size-mismatched", tuple(self.mismatched))):
            if keys:
                parts.append(f"{len(keys)} {label} ({_first(keys)})")
        return ", ".join(parts)


def plan(source: Mapping[str, Any], target: nn.Module) -> LoadPlan:
    """Compare a checkpoint's keys and shapes with the target model's, in the target's key order."""
    have, want = source_shapes(source), target_shapes(target)
    mismatched = {k: (have[k], want[k]) for k in want if k in have and have[k] != want[k]
                  and not k.endswith("_extra_state")}
    return LoadPlan(
        missing=tuple(k for k in want if k not in have),
        unexpected=tuple(k for k in have if k not in want),
        mismatched=mismatched,
        loaded=tuple(k for k in want if k in have and k not in mismatched),
    )


def _first(keys: tuple[str, ...], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f", +{len(keys) - shown}" if len(keys) > shown else "")
