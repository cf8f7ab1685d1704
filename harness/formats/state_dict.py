"""``torch.save(model.state_dict())`` in the zip and the legacy container."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, Source, _torch_pickle, load_into_fresh, register


class StateDict(Format):
    holds = frozenset({"weights"})

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.capabilities = _torch_pickle.capabilities(legacy)
        self.name = "state_dict_legacy" if legacy else "state_dict_zip"
        container = "legacy (non-zip) stream" if legacy else "zip container"
        self.description = f"model.state_dict() saved with torch.save in the {container}"

    def payload(self, prepared: Prepared) -> Any:
        return prepared.one_model.state_dict()

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, self.legacy)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case], mmap: bool = False) -> Any:
        return _torch_pickle.load(source, mode, map_location, mmap)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return load_into_fresh(case, {"model": obj})


register(StateDict(legacy=False))
register(StateDict(legacy=True))
