"""What is benchmarked: a model of a requested size, saved through a registered format.

The model is a stack of ``nn.Linear(width, width)`` layers built under a fixed seed, so every
run and every release writes the same bytes. It is an unregistered :class:`~harness.case.Case`
(``produce`` never sees it), prepared by :func:`harness.case.prepare` and turned into each
format's payload by the format's own ``payload``: the benchmark measures the registered
``save``/``load``, nothing written for the occasion.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from harness import compat
from harness.bench.sizes import label
from harness.case import Case, prepare
from harness.fingerprint import flatten
from harness.formats import FORMATS, Format

#: widest layer: 2048 x 2048 float32 = 16 MB per weight, so a large payload is many mid-sized tensors
MAX_WIDTH = 2048
#: formats benchmarked when none is named: the weight formats people ship, one pickle of a module,
#: and the two program formats (training checkpoints are state_dicts plus optimizer state)
DEFAULT_FORMATS = ("state_dict_zip", "state_dict_legacy", "safetensors", "whole_model_zip", "torchscript_script",
                   "export_pt2")


class BenchModel(nn.Module):
    """``depth`` Linear(width, width) layers applied in turn (module-level so whole-model pickles find it)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def shape_for(nbytes: int) -> tuple[int, int]:
    """``(width, depth)`` whose float32 weights and biases add up to about ``nbytes``."""
    width = MAX_WIDTH
    while width > 8 and width * width * 4 > nbytes:
        width //= 2
    per_layer = (width * width + width) * 4
    return width, max(1, round(nbytes / per_layer))


def _inputs(width: int) -> tuple[torch.Tensor]:
    return (torch.randn(1, width),)


@functools.cache
def bench_case(nbytes: int) -> Case:
    """The benchmark case of about ``nbytes`` of float32 parameters (one object per size)."""
    width, depth = shape_for(nbytes)
    return Case(
        name=f"bench_{label(nbytes)}",
        exercises=f"{depth} x Linear({width}, {width}): about {label(nbytes)} of float32 weights",
        build=functools.partial(BenchModel, width, depth),
        inputs=functools.partial(_inputs, width),
        optimizer="sgd",
        corpus=False,
    )


@dataclasses.dataclass
class Payload:
    """One format's payload of the bench case, and how many tensor bytes it carries."""

    fmt: Format
    case: Case
    obj: Any
    tensor_bytes: int


def build(fmt: Format, case: Case) -> Payload:
    """``fmt``'s payload of ``case``; one optimizer step first when the format holds optimizer state."""
    prepared = prepare(case, steps=1 if "optimizer" in fmt.holds else 0)
    obj = fmt.payload(prepared)
    return Payload(fmt, case, obj, tensor_bytes(fmt.contents(obj)))


def tensor_bytes(obj: Any) -> int:
    """Bytes of the distinct storages under every tensor in ``obj`` (shared storages once)."""
    seen: dict[Any, int] = {}
    for _, value in flatten(obj):
        if isinstance(value, torch.Tensor):
            seen[compat.storage_key(value)] = compat.storage_nbytes(value)
    return sum(seen.values())


def formats_for(names: list[str] | None, case: Case) -> list[Format]:
    """The formats to benchmark: ``names`` (``all``: every one that applies), else DEFAULT_FORMATS.

    A named format that does not apply to a one-model case, or that this torch cannot write, is
    an error; an unnamed default that is unavailable here is left out.
    """
    from harness.errors import HarnessError

    if names and "all" in names:
        return [f for f in FORMATS if f.applicable(case) and not f.unavailable()]
    chosen = [FORMATS.get(n) for n in names] if names else [f for f in FORMATS if f.name in DEFAULT_FORMATS]
    for fmt in chosen:
        if names and not fmt.applicable(case):
            raise HarnessError(f"format {fmt.name!r} does not hold a single model; pick a one-model format")
        if names and fmt.unavailable():
            raise HarnessError(f"format {fmt.name!r} is unavailable here: {fmt.unavailable()}")
    return [f for f in chosen if not f.unavailable()]
