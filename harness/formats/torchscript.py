"""TorchScript archives: ``torch.jit.script`` and ``torch.jit.trace``, saved with ``torch.jit.save``."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case, Prepared
from harness.formats import Capabilities, Format, Source, register


class TorchScript(Format):
    holds = frozenset({"weights", "module"})
    own_program = True
    keeps_mode = True
    suffix = ".ts.pt"
    #: torch.jit.load takes a path or a file-like object, and a string or torch.device map_location
    capabilities = Capabilities(map_locations=frozenset({"none", "str", "device"}),
                                sources=frozenset({"path", "BytesIO"}),
                                container="torchscript")

    def __init__(self, how: str) -> None:
        self.how = how
        self.name = f"torchscript_{how}"
        self.description = f"torch.jit.{how}(model) saved with torch.jit.save; loads without the case's code"

    def unavailable(self) -> Optional[str]:
        return compat.has_jit()

    def payload(self, prepared: Prepared) -> Any:
        model = copy.deepcopy(prepared.one_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit deprecation and tracer warnings are not findings here
            if self.how == "script":
                return torch.jit.script(model)
            mode = model.training
            traced = torch.jit.trace(model.eval(), prepared.inputs["model"], check_trace=False)
            return traced.train(mode)

    def save(self, payload: Any, path: Path) -> None:
        torch.jit.save(payload, str(path))

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        return torch.jit.load(str(source) if isinstance(source, Path) else source, map_location=map_location)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": obj}


register(TorchScript("script"))
register(TorchScript("trace"))
