"""A state_dict as a numpy ``.npz`` archive (``numpy.savez``; read with ``allow_pickle=False``): the
weights of one model with no pickle at all. numpy has no bfloat16, so a model holding one cannot be
saved this way. Tied weights are written once and re-tied by the model's own code on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy
import torch
from torch import nn

from harness.case import Case, Prepared
from harness.formats import CannotSave, Capabilities, Format, Source, register
from harness.formats.sharded_safetensors import aliases, load_into


class NumpyNpz(Format):
    name = "numpy_npz"
    description = "model.state_dict() as numpy arrays in one .npz (numpy.savez, loaded with allow_pickle=False)"
    holds = frozenset({"weights"})
    needs_code = True
    suffix = ".npz"
    capabilities = Capabilities(sources=frozenset({"path", "BytesIO"}), container="npz")

    def payload(self, prepared: Prepared) -> Any:
        model = prepared.models["model"]
        for name, tensor in model.state_dict().items():
            if tensor.dtype == torch.bfloat16:
                raise CannotSave(f"numpy has no bfloat16 ({name})")
        return model

    def contents(self, obj: Any) -> Any:
        return obj.state_dict()

    def save(self, payload: Any, path: Path) -> None:
        state = payload.state_dict()
        dropped = aliases(state)
        arrays = {}
        for name, tensor in state.items():
            if name in dropped:
                continue
            arrays[name] = tensor.detach().cpu().numpy()
        with open(path, "wb") as stream:
            numpy.savez(stream, **arrays)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        if case is None:
            raise RuntimeError("loading a .npz state_dict needs the case's model code")
        with numpy.load(source, allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name].copy()) for name in arrays.files}
        return load_into(case.fresh_models()["model"], state)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": obj}


register(NumpyNpz())
