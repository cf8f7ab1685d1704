"""``Case.models_to_fill``: models for a strict load, whose state-dict tensors are allocated, not copied from the
template. After the strict load they are the models ``fresh_models`` + the same load give: every parameter and
buffer (the non-persistent ones too), dtype, stride, requires_grad and storage sharing."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from harness import compat
from harness.case import CASES, Case

SMALL = [c.name for c in CASES if not c.missing_requirement() and c.name not in ("resnet18", "vgg16")]


def _everything(models: dict[str, nn.Module]) -> dict[str, Any]:
    """Each tensor of the models (parameters and every buffer) by name, and the sharing groups by storage."""
    found: dict[str, Any] = {}
    groups: dict[Any, list[str]] = {}
    for model_name, model in models.items():
        named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
        for name, tensor in named:
            key = f"{model_name}.{name}"
            found[key] = (tensor.dtype, tuple(tensor.shape), tensor.stride(), tensor.requires_grad,
                          type(tensor).__name__, tensor.detach().clone())
            groups.setdefault(compat.storage_key(tensor), []).append(key)
    sharing = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    return {"tensors": found, "sharing": sharing}


def _loaded(case: Case, models: dict[str, nn.Module]) -> dict[str, nn.Module]:
    for name, model in models.items():
        model.load_state_dict(case.template()[name].state_dict())
    return models


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["sharing"] == b["sharing"]
    assert a["tensors"].keys() == b["tensors"].keys()
    for key, (*meta, values) in a["tensors"].items():
        *other_meta, other = b["tensors"][key]
        assert meta == other_meta, key
        assert torch.equal(values.view(torch.uint8) if values.dtype == torch.bool else values, other), key


@pytest.mark.parametrize("name", SMALL)
def test_a_strict_load_into_them_gives_the_fresh_models(name: str) -> None:
    case = CASES.get(name)
    _same(_everything(_loaded(case, case.models_to_fill())), _everything(_loaded(case, case.fresh_models())))


def test_state_tensors_are_new_and_shared_or_non_persistent_ones_are_copies() -> None:
    """tied: its shared weight and view buffer keep the template's copy (the sharing stays); batchnorm: the
    non-persistent buffer is copied with its value; other state tensors are fresh allocations."""
    for name in ("tied", "batchnorm"):
        case = CASES.get(name)
        template = case.template()
        filled = case.models_to_fill()
        for model_name, model in filled.items():
            reference = dict(template[model_name].named_parameters(remove_duplicate=False))
            reference.update(template[model_name].named_buffers(remove_duplicate=False))
            for key, tensor in [*model.named_parameters(), *model.named_buffers()]:
                assert tensor.data_ptr() != reference[key].data_ptr() or tensor.numel() == 0, key
    batchnorm = CASES.get("batchnorm")
    model = batchnorm.models_to_fill()["model"]
    persistent = set(model.state_dict())
    template = dict(batchnorm.template()["model"].named_buffers())
    kept = [n for n, b in model.named_buffers() if n not in persistent]
    assert kept, "the batchnorm case keeps a non-persistent buffer"
    for name in kept:
        assert torch.equal(dict(model.named_buffers())[name], template[name]), name


def test_each_case_object_keeps_its_own_template_and_pickles_without_it() -> None:
    """The template goes with the case object: an equal case made later (it may reuse a gone case's id) builds its
    own, a pickled case carries none, and forget_template drops it."""
    import pickle

    first = Case(name="toy_kept", exercises="-", build=_linear, inputs=_zeros)
    second = Case(name="toy_kept", exercises="-", build=_linear, inputs=_zeros)
    built = first.template()
    assert first.built_template() is built and second.built_template() == {}
    assert pickle.loads(pickle.dumps(first)).built_template() == {}
    assert first.built_template() is built  # pickling left it in place
    first.forget_template()
    assert first.built_template() == {} and first.template() is not built


def _linear() -> nn.Module:
    return nn.Linear(2, 2)


def _zeros() -> tuple[torch.Tensor]:
    return (torch.zeros(1, 2),)
