"""The multi-model dict: two models and two optimizers in one file (the GAN layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, Resumable, Source, _torch_pickle, load_into_fresh, register


class MultiModel(Format):
    """Two models and two optimizers in one dict, the layout of PyTorch's GAN examples."""

    name = "multi_model"
    description = "{'<name>_state_dict', 'optimizer_<name>_state_dict', ...} for every model of the case"
    holds = frozenset({"weights", "optimizer"})
    capabilities = _torch_pickle.capabilities(legacy=False)
    models = "many"

    def payload(self, prepared: Prepared) -> Any:
        checkpoint: dict[str, Any] = {"epoch": prepared.steps}
        for name, model in prepared.models.items():
            checkpoint[f"{name}_state_dict"] = model.state_dict()
            checkpoint[f"optimizer_{name}_state_dict"] = prepared.optimizers[name].state_dict()
        return checkpoint

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, legacy=False)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case], mmap: bool = False) -> Any:
        return _torch_pickle.load(source, mode, map_location, mmap)

    def _names(self, obj: Any) -> list[str]:
        return [key[: -len("_state_dict")] for key in obj
                if key.endswith("_state_dict") and not key.startswith("optimizer_")]

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return load_into_fresh(case, {name: obj[f"{name}_state_dict"] for name in self._names(obj)})

    def resumable(self, obj: Any) -> Optional[Resumable]:
        names = self._names(obj)
        return Resumable(
            model_states={n: obj[f"{n}_state_dict"] for n in names},
            optimizer_states={n: obj[f"optimizer_{n}_state_dict"] for n in names},
            scheduler_states={},
        )


register(MultiModel())
