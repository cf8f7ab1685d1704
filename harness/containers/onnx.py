"""ONNX models: one protobuf ``ModelProto`` file (graph, opsets, initializers); no pickle. Parsed with
the ``onnx`` package where it is installed; weights stored as external data are not followed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.containers import Container, ContainerError, head, register

#: the first byte of a ModelProto: field 1 (ir_version), varint
FIRST_BYTE = b"\x08"


def parse(path: Path) -> Any:
    """The ``onnx.ModelProto`` in ``path`` (external data not loaded); ContainerError when it does not parse."""
    try:
        import onnx
    except ImportError as exc:
        raise ContainerError(f"the onnx package is not installed: {exc}") from None
    try:
        return onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ContainerError(f"{path}: not an ONNX model: {type(exc).__name__}: {exc}") from None


class OnnxModel(Container):
    name = "onnx"
    description = "ONNX ModelProto (protobuf graph with initializers)"
    loader = "onnx"

    def recognises(self, path: Path) -> bool:
        if not head(path, 1) == FIRST_BYTE:
            return False
        try:
            model = parse(path)
        except ContainerError:
            return False
        return bool(model.graph.node) or bool(model.graph.initializer)

    def tensor_bytes(self, path: Path) -> int:
        from onnx import numpy_helper

        return sum(len(t.raw_data) if t.raw_data else numpy_helper.to_array(t).nbytes
                   for t in parse(path).graph.initializer)


ONNX = OnnxModel()
register(ONNX)
