"""TorchScript archives (``torch.jit.save``): a zip with ``code/``, ``constants.pkl`` and ``data/`` records."""

from __future__ import annotations

from pathlib import Path

from harness.containers import Container, _zip, register


class TorchScriptArchive(Container):
    name = "torchscript"
    description = "TorchScript zip archive (code/, constants.pkl, data.pkl, data/)"

    loader = "torch.jit.load"

    def recognises(self, path: Path) -> bool:
        return _zip.is_kind(path, self.name)

    def tensor_bytes(self, path: Path) -> int:
        return _zip.tensor_bytes(path)


TORCHSCRIPT = TorchScriptArchive()
register(TORCHSCRIPT)
