"""``torch.save(model)``: the whole module pickled, in the zip and the legacy container."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, Source, _torch_pickle, register


class WholeModel(Format):
    holds = frozenset({"weights", "module"})
    needs_code = True
    keeps_mode = True
    # Unpickling a module runs its classes' code: only weights_only=False can load it, and the
    # harness does so only for its own hash-verified artifacts (see harness.consume.collect).

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.capabilities = _torch_pickle.capabilities(legacy)
        self.name = "whole_model_legacy" if legacy else "whole_model_zip"
        container = "legacy (non-zip) stream" if legacy else "zip container"
        self.description = f"torch.save(model): the pickled module in the {container}"

    def payload(self, prepared: Prepared) -> Any:
        return prepared.single

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, self.legacy)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case], mmap: bool = False) -> Any:
        return _torch_pickle.load(source, mode, map_location, mmap)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return {"model": obj}


register(WholeModel(legacy=False))
register(WholeModel(legacy=True))
