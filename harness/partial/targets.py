"""Partial-load targets built once and handed out again with the values they were built with.

A plain scenario loads into a fresh target three times per artifact (``strict=False``, ``strict=True``,
the fix; a failure's message builds a fourth to plan on, anew). Building vgg16's target deep-copies the case's 553 MB
template each time (~0.6 CPU s, most of it page faults on new memory); copying the built values back
into the same tensors costs a fraction of that (a vgg16 scenario run on the 2-core machine under load:
~2.1–2.5 CPU s with a build per use, ~0.8 with the target kept). :func:`fresh` keeps the last
:data:`KEPT` targets it built, one per scenario and case, and before it hands one out again:

- checks that nothing but tensor values changed (:func:`layout`): the same modules of the same types,
  the same attribute objects on each, the same parameter and buffer objects with the same dtype,
  shape, stride, storage and ``requires_grad``; anything else (a layer replaced, an attribute or a
  parameter reassigned) drops the kept target and builds a new one;
- copies the values it was built with back into every parameter and buffer, non-persistent ones too.

The built values are kept once (:func:`pristine`): a tensor bit-identical to one of the case's
template models (what :meth:`Case.fresh_models` copies, where it was built already) is read from
there, anything else (a new head, a model built from scratch) is cloned. A target that
:func:`keepable` refuses — modules with extra state (``set_extra_state`` may change anything), a
tensor that is not a plain strided CPU one — is built anew on every call, as before.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterator, Optional

import torch
from torch import nn

from harness.case import Case
from harness.fingerprint import hash_tensor
from harness.partial import Scenario

#: targets kept at once, the most recently used ones (vgg16's two scenarios keep 553 MB each)
KEPT = 4


@dataclasses.dataclass
class Kept:
    """One built target, how it was laid out and the values it was built with (one per tensor, in
    :func:`tensors` order)."""

    scenario: Scenario
    case: Case
    model: nn.Module
    layout: tuple[Any, ...]
    values: list[torch.Tensor]


_KEPT: collections.OrderedDict[tuple[int, int], Kept] = collections.OrderedDict()


def fresh(scenario: Scenario, case: Case) -> nn.Module:
    """``scenario.build_target(case)``, or the target built for them before, restored in place to the
    values it was built with (see the module docstring)."""
    key = (id(scenario), id(case))
    kept = _KEPT.pop(key, None)
    if kept is not None and kept.scenario is scenario and kept.case is case and layout(kept.model) == kept.layout:
        restore(kept)
    else:
        model = scenario.build_target(case)
        if not keepable(model):
            return model
        kept = Kept(scenario, case, model, layout(model), pristine(model, case))
    _KEPT[key] = kept
    while len(_KEPT) > KEPT:
        _KEPT.popitem(last=False)
    return kept.model


def forget() -> None:
    """Drop every kept target (and the memory it holds)."""
    _KEPT.clear()


def tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter and buffer of ``model`` once (shared ones and non-persistent buffers included)."""
    seen: set[int] = set()
    for module in model.modules():
        for tensor in list(module._parameters.values()) + list(module._buffers.values()):
            if tensor is not None and id(tensor) not in seen:
                seen.add(id(tensor))
                yield tensor


def keepable(model: nn.Module) -> bool:
    """Whether restoring the tensors' values gives the target back as built: no module keeps extra state,
    and every tensor is a plain (strided, CPU, not quantized) tensor or Parameter."""
    if any(type(m).set_extra_state is not nn.Module.set_extra_state for m in model.modules()):
        return False
    return all(type(t) in (torch.Tensor, nn.Parameter) and t.layout == torch.strided and t.device.type == "cpu"
               and not t.is_quantized for t in tensors(model))


def layout(model: nn.Module) -> tuple[Any, ...]:
    """Everything about ``model`` but its tensors' values: a restore of the values gives the target back
    as built only while this is unchanged."""
    return tuple((name, type(module), id(module), _attributes(module), _slots(module._parameters),
                  _slots(module._buffers), tuple(sorted(getattr(module, "_non_persistent_buffers_set", ()))))
                 for name, module in model.named_modules(remove_duplicate=False))


def _attributes(module: nn.Module) -> tuple[tuple[str, int], ...]:
    """Each attribute of ``module`` (its submodules, parameters and buffers aside) by object identity."""
    return tuple(sorted((name, id(value)) for name, value in vars(module).items()
                        if name not in ("_parameters", "_buffers", "_modules")))


def _slots(named: dict[str, Optional[torch.Tensor]]) -> tuple[Any, ...]:
    return tuple((name, None if t is None else _signature(t)) for name, t in named.items())


def _signature(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (id(tensor), type(tensor), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()),
            tensor.storage_offset(), tensor.data_ptr(), tensor.device, tensor.requires_grad)


def pristine(model: nn.Module, case: Case) -> list[torch.Tensor]:
    """The values of ``model``'s tensors as they are now: read from the case's template models (where built
    already) when a template tensor is bit-identical (same dtype, shape and byte hash), else a clone."""
    template: dict[tuple[Any, ...], torch.Tensor] = {}
    for built in case.built_template().values():
        for tensor in tensors(built):
            template.setdefault(_value_key(tensor), tensor.detach())
    values = []
    for tensor in tensors(model):
        found = template.get(_value_key(tensor))
        values.append(tensor.detach().clone() if found is None else found)
    return values


def _value_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    return tensor.dtype, tuple(tensor.shape), hash_tensor(tensor)


def restore(kept: Kept) -> None:
    """Copy the values ``kept`` was built with back into its target's tensors, in place."""
    with torch.no_grad():
        for tensor, value in zip(tensors(kept.model), kept.values):
            tensor.copy_(value)
