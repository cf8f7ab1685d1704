"""TorchScript archives (``torch.jit.save``): a zip with ``code/``, ``constants.pkl`` and ``data/`` records."""

from __future__ import annotations

from harness.containers import register
from harness.containers._zip import ZipContainer


class TorchScriptArchive(ZipContainer):
    name = "torchscript"
    description = "TorchScript zip archive (code/, constants.pkl, data.pkl, data/)"

    loader = "torch.jit.load"


TORCHSCRIPT = TorchScriptArchive()
register(TORCHSCRIPT)
