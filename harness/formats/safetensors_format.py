"""safetensors: a state_dict only, no pickle. Shared tensors are handled the way safetensors
requires: ``save_model`` keeps one name per shared storage (recording the others in metadata)
and ``load_model`` loads into a freshly built model, whose own code re-ties them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness import compat
from harness.case import Case, Prepared
from harness.formats import Capabilities, Format, Source, register


class SafeTensors(Format):
    name = "safetensors"
    description = "safetensors.torch.save_model / load_model (state_dict only, no pickle)"
    holds = frozenset({"weights"})
    needs_code = True
    suffix = ".safetensors"
    #: load_model reads a path onto one device, given as a string
    capabilities = Capabilities(map_locations=frozenset({"none", "str"}), container="safetensors")

    def unavailable(self) -> Optional[str]:
        _, reason = compat.import_optional("safetensors.torch")
        return reason

    def payload(self, prepared: Prepared) -> Any:
        return prepared.single

    def contents(self, obj: Any) -> Any:
        return obj.state_dict()

    def save(self, payload: Any, path: Path) -> None:
        import safetensors.torch

        safetensors.torch.save_model(payload, str(path), force_contiguous=True)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        import safetensors.torch

        if case is None:
            raise RuntimeError("safetensors load_model needs the case's model code")
        model = case.models_to_fill()["model"]  # the strict load below writes every value
        device = "cpu" if map_location is None else str(map_location)
        safetensors.torch.load_model(model, str(source), strict=True, device=device)
        return model

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": obj}


register(SafeTensors())
