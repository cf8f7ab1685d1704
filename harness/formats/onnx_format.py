"""ONNX: the case's model exported with ``torch.onnx.export`` (the TorchScript-based exporter where the
release offers the choice, see :func:`harness.compat.onnx_export_kwargs`), checked with ``onnx.checker``
and run with onnxruntime. No pickle; loads without the case's code.

The payload is the exported ``ModelProto``; saving writes it, loading parses and checks it again. The
loaded model runs through onnxruntime on the case's fixed inputs: the ``outputs`` check holds it to the
producer's ONNX outputs bit for bit in the same environment and to the eager model within the case's
tolerance elsewhere. At export the runtime's outputs are also held to the eager model's within
tolerance, so an export that changes the numerics is an error, not a baseline. A model the exporter
refuses is a skip with the exporter's reason.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case, Prepared
from harness.formats import CannotSave, Capabilities, Format, Source, register

#: metadata key holding the eager output's structure (ONNX outputs are a flat list), as :func:`output_layout` JSON
OUTPUT_LAYOUT = "ckpt_harness.output_layout"


def output_layout(output: Any) -> Any:
    """The nesting of ``output`` as JSON-able data, tensors replaced by ``"tensor"``: tuples, lists and
    str-keyed dicts only. The harness's own encoding, not torch's private pytree serialization, which
    1.13 lacks and whose format changes between releases."""
    if isinstance(output, torch.Tensor):
        return "tensor"
    if isinstance(output, (tuple, list)):
        return {type(output).__name__: [output_layout(item) for item in output]}
    if isinstance(output, dict) and all(isinstance(key, str) for key in output):
        return {"dict": [[key, output_layout(value)] for key, value in output.items()]}
    raise CannotSave(f"the model returns a {type(output).__name__}: ONNX outputs are tensors in tuples, lists "
                     "or str-keyed dicts")


def flat_outputs(output: Any) -> list[torch.Tensor]:
    """The tensors of ``output`` in :func:`output_layout` order (the order ONNX lists its outputs)."""
    if isinstance(output, torch.Tensor):
        return [output]
    values = output.values() if isinstance(output, dict) else output
    return [tensor for item in values for tensor in flat_outputs(item)]


def rebuild_outputs(layout: Any, flat: list[torch.Tensor]) -> Any:
    """``flat`` nested as ``layout`` says; a ValueError when they disagree (a damaged or foreign file)."""
    remaining = list(reversed(flat))

    def build(node: Any) -> Any:
        if node == "tensor":
            if not remaining:
                raise ValueError
            return remaining.pop()
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError
        (kind, items), = node.items()
        if kind == "dict":
            return {str(key): build(value) for key, value in items}
        if kind not in ("tuple", "list"):
            raise ValueError
        return (tuple if kind == "tuple" else list)([build(item) for item in items])

    try:
        rebuilt = build(layout)
    except (TypeError, ValueError):
        raise ValueError(f"the file's output layout does not match its {len(flat)} outputs") from None
    if remaining:
        raise ValueError(f"the file's output layout names fewer than its {len(flat)} outputs")
    return rebuilt


class OnnxModule(nn.Module):
    """Runs an ONNX model with onnxruntime on the CPU, taking and returning torch tensors."""

    def __init__(self, proto: Any) -> None:
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        layout = {p.key: p.value for p in proto.metadata_props}.get(OUTPUT_LAYOUT)
        self.layout = json.loads(layout) if layout is not None else None

    def forward(self, *inputs: torch.Tensor) -> Any:
        flat = {f"input_{i}": x.detach().cpu().numpy() for i, x in enumerate(inputs)}
        results = [torch.from_numpy(r.copy()) for r in self.session.run(None, {n: flat[n] for n in self.names})]
        if self.layout is None:
            return results[0] if len(results) == 1 else tuple(results)
        return rebuild_outputs(self.layout, results)


#: how far beyond the case's atol onnxruntime may round before an export counts as wrong rather than imprecise
ROUNDING_FACTOR = 100


def _export_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
    """The exported ONNX bytes of ``model`` on ``inputs``; CannotSave when the exporter refuses it.

    Inputs with a zero-size dimension are refused before the exporter sees them: the TorchScript exporter
    kills its own process with SIGFPE on an empty batch through BatchNorm (found by the fuzz property), and
    exporting in a forked child instead hung on a lock held by a thread of the parent.
    """
    empty = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.numel() == 0]
    if empty:
        raise CannotSave(f"input {empty[0]} has a zero-size dimension: the TorchScript exporter crashes its process "
                         "(SIGFPE) on an empty batch, so the harness does not export it")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, inputs, buffer,  # type: ignore[arg-type]  # a file object works too
                              input_names=[f"input_{i}" for i in range(len(inputs))], **compat.onnx_export_kwargs())
    except Exception as exc:
        raise CannotSave(f"torch.onnx.export refuses this model: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    return buffer.getvalue()


def export(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    """The ``ModelProto`` of ``model`` (eval mode) on ``inputs``; CannotSave when the exporter refuses it."""
    import onnx

    with torch.no_grad():
        layout = output_layout(model(*inputs))
    proto = onnx.load_model_from_string(_export_bytes(model, inputs))
    entry = proto.metadata_props.add()
    entry.key, entry.value = OUTPUT_LAYOUT, json.dumps(layout)
    onnx.checker.check_model(proto)
    return proto


class Onnx(Format):
    name = "onnx"
    description = "torch.onnx.export(model.eval(), inputs), checked with onnx.checker, run with onnxruntime"
    holds = frozenset({"weights", "module"})
    own_program = True
    suffix = ".onnx"
    capabilities = Capabilities(sources=frozenset({"path", "BytesIO"}), container="onnx")

    def unavailable(self) -> Optional[str]:
        return compat.onnx_unavailable()

    def payload(self, prepared: Prepared) -> Any:
        model = copy.deepcopy(prepared.models["model"]).eval()
        inputs = prepared.inputs["model"]
        proto = export(model, inputs)
        with torch.no_grad():
            expected = flat_outputs(model(*inputs))
        try:
            actual = flat_outputs(OnnxModule(proto)(*inputs))
        except Exception as exc:  # no kernel for an op or a dtype (LSTM in double or bfloat16): onnxruntime's limit
            raise CannotSave(f"onnxruntime cannot run this export: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        if len(actual) != len(expected):
            raise ValueError(f"onnxruntime gives {len(actual)} outputs for the eager model's {len(expected)}")
        worst = max((float((a.double() - e.double()).abs().max())
                     for a, e in zip(actual, expected, strict=True) if a.numel()), default=0.0)
        atol = prepared.case.atol
        if worst > ROUNDING_FACTOR * atol:  # far beyond kernel rounding: the export computes something else
            raise ValueError(f"onnxruntime's outputs of the export differ from the eager model's by {worst:.3g} "
                             f"(atol {atol:g})")
        if worst > atol:  # onnxruntime's kernels round differently from torch's: not held to the case's atol
            raise CannotSave(f"onnxruntime's outputs differ from the eager model's by {worst:.3g}: beyond the case's "
                             f"atol {atol:g} but within {ROUNDING_FACTOR}x of it (kernel rounding), so not compared")
        return proto

    def save(self, payload: Any, path: Path) -> None:
        import onnx

        onnx.save_model(payload, str(path))

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        import onnx

        proto = onnx.load_model(str(source) if isinstance(source, Path) else source)
        onnx.checker.check_model(proto)
        return proto

    def contents(self, obj: Any) -> Any:
        from onnx import numpy_helper

        return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in obj.graph.initializer}

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": OnnxModule(obj)}


register(Onnx())
