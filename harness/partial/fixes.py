"""User-side fixes for the partial loads people get wrong, as tested helpers.

- :func:`drop_mismatched`: ``load_state_dict(strict=False)`` still raises on a size mismatch
  (pytorch#24139, #40859); drop those keys first and report them.
- :func:`detect_prefix`, :func:`strip_prefix`, :func:`add_prefix`: ``module.`` from
  DataParallel/DistributedDataParallel and ``_orig_mod.`` from ``torch.compile``.

Every helper returns a new state_dict (``_metadata`` kept and re-keyed); the input is never modified.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping, Optional

from torch import nn

from harness import compat
from harness.partial.expected import Shape, source_shapes, target_shapes

#: the prefixes wrappers add to every key: DataParallel/DDP, then torch.compile
KNOWN_PREFIXES = ("module.", "_orig_mod.")


def _copy(state: Mapping[str, Any], items: list[tuple[str, Any]], metadata: Optional[dict] = None) -> Any:
    """A new state dict of ``items`` with its own copy of ``_metadata`` (``state``'s unless given): a load
    with ``assign=True`` writes into the ``_metadata`` it is handed, which must never be the user's."""
    out = collections.OrderedDict(items)
    metadata = getattr(state, "_metadata", None) if metadata is None else metadata
    if metadata is not None:
        out._metadata = collections.OrderedDict((k, dict(v)) for k, v in metadata.items())  # type: ignore[attr-defined]
    return out


def drop_mismatched(state: Mapping[str, Any], model: nn.Module) -> tuple[Any, dict[str, tuple[Shape, Shape]]]:
    """``(state without size-mismatched keys, {key: (checkpoint shape, model shape)})``.

    Load the result with ``strict=False``: the dropped keys then show up in ``missing_keys`` and
    keep the model's own initialisation (a new classifier head, say).
    """
    have, want = source_shapes(state), target_shapes(model)
    dropped = {k: (have[k], want[k]) for k in state if k in want and have[k] != want[k]}
    return _copy(state, [(k, v) for k, v in state.items() if k not in dropped]), dropped


@dataclasses.dataclass(frozen=True)
class PrefixFix:
    """A key prefix that makes a checkpoint fit a model: ``action`` is ``strip`` or ``add``."""

    action: str
    prefix: str

    def apply(self, state: Mapping[str, Any]) -> Any:
        return strip_prefix(state, self.prefix) if self.action == "strip" else add_prefix(state, self.prefix)

    def describe(self) -> str:
        where = "from" if self.action == "strip" else "to"
        return f"{self.action} {self.prefix!r} {where} every key"


def detect_prefix(state: Mapping[str, Any], model: nn.Module,
                  prefixes: tuple[str, ...] = KNOWN_PREFIXES) -> Optional[PrefixFix]:
    """The prefix fix that makes ``state``'s keys equal the model's, or None when none does.

    Stacked wrappers (``module._orig_mod.``) are found too: prefixes are tried one at a time until
    the keys match or no known prefix is left.
    """
    want = set(target_shapes(model))
    keys = list(state)
    if set(keys) == want or not keys:
        return None
    for action in ("strip", "add"):
        found = _search(keys, want, action, prefixes, "")
        if found:
            return PrefixFix(action, found)
    return None


def _search(keys: list[str], want: set[str], action: str, prefixes: tuple[str, ...], done: str) -> str:
    for prefix in prefixes:
        if action == "strip":
            if not all(k.startswith(prefix) for k in keys):
                continue
            moved = [k[len(prefix):] for k in keys]
        else:
            moved = [prefix + k for k in keys]
        if set(moved) == want:
            return done + prefix if action == "strip" else prefix + done
        if len(done) < 64:
            deeper = _search(moved, want, action, prefixes, done + prefix if action == "strip" else prefix + done)
            if deeper:
                return deeper
    return ""


def strip_prefix(state: Mapping[str, Any], prefix: str) -> Any:
    """A copy of ``state`` with ``prefix`` removed from every key that has it.

    Uses ``torch.nn.modules.utils.consume_prefix_in_state_dict_if_present`` (on a copy: it works
    in place) where the release has it, so the result is exactly what PyTorch's helper gives.
    """
    copy = _copy(state, list(state.items()))  # its own _metadata: consume_prefix re-keys it in place
    consume = compat.consume_prefix_function()
    if consume is not None:
        consume(copy, prefix)
        return copy
    items = [(k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in copy.items()]  # pragma: no cover
    metadata = getattr(copy, "_metadata", None)  # pragma: no cover
    if metadata is not None:  # pragma: no cover
        metadata = collections.OrderedDict((_strip_meta(k, prefix), v) for k, v in metadata.items())
    return _copy(copy, items, metadata)  # pragma: no cover


def _strip_meta(key: str, prefix: str) -> str:
    if key == prefix.rstrip("."):
        return ""
    return key[len(prefix):] if key.startswith(prefix) else key


def add_prefix(state: Mapping[str, Any], prefix: str) -> Any:
    """A copy of ``state`` with ``prefix`` put in front of every key (to load into a wrapper)."""
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        metadata = collections.OrderedDict(
            ((prefix + k if k else prefix.rstrip(".")), dict(v)) for k, v in metadata.items())
    return _copy(state, [(prefix + k, v) for k, v in state.items()], metadata)

