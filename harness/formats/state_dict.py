"""``torch.save(model.state_dict())`` in the zip and the legacy container."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, load_into_fresh, register
from harness.formats import _torch_pickle


class StateDict(Format):
    holds = frozenset({"weights"})
    pickled = True

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.name = "state_dict_legacy" if legacy else "state_dict_zip"
        container = "legacy (non-zip) stream" if legacy else "zip container"
        self.description = f"model.state_dict() saved with torch.save in the {container}"

    def payload(self, prepared: Prepared) -> Any:
        return prepared.single.state_dict()

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, self.legacy)

    def stored_tensor_bytes(self, path: Path) -> int:
        return _torch_pickle.legacy_tensor_bytes(path) if self.legacy else super().stored_tensor_bytes(path)

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        return _torch_pickle.load(path, mode, map_location)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return load_into_fresh(case, {"model": obj})


register(StateDict(legacy=False))
register(StateDict(legacy=True))
