"""torch.export programs saved with ``torch.export.save`` (a .pt2 archive)."""

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


class ExportedProgram(Format):
    name = "export_pt2"
    description = "torch.export.export(model.eval(), inputs) saved with torch.export.save; loads without code"
    holds = frozenset({"weights", "module"})
    own_program = True
    suffix = ".pt2"
    #: torch.export.load has no map_location: the program loads where it was saved
    capabilities = Capabilities(container="pt2")

    def unavailable(self) -> Optional[str]:
        return compat.has_torch_export_save()

    def payload(self, prepared: Prepared) -> Any:
        model = copy.deepcopy(prepared.one_model).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(model, prepared.inputs["model"])

    def save(self, payload: Any, path: Path) -> None:
        torch.export.save(payload, str(path))

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        return torch.export.load(str(source))

    def contents(self, obj: Any) -> Any:
        return {"state_dict": dict(obj.state_dict), "constants": dict(getattr(obj, "constants", {}) or {})}

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": obj.module()}


register(ExportedProgram())
