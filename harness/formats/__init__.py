"""Checkpoint formats: how a prepared case is saved, and how the file is loaded back.

Each module in this package defines one or more :class:`Format` subclasses and registers an
instance with :func:`register`. A format declares what it can hold, whether loading needs the
case's code, whether it is a pickle (so ``weights_only`` load modes apply), and which load modes
it is consumed with. The payload a format saves and the object its loader returns are of the
same kind, so ``save(load(path))`` is the second round trip.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness.case import Case, Prepared
from harness.internal.registry import Registry

#: Load modes: the release's default ``torch.load``, ``weights_only=True`` and ``weights_only=False``.
#: ``unsafe`` (weights_only=False) runs arbitrary pickle code: the consumer uses it only on the
#: harness's own artifacts, after verifying each file's hash against its manifest.
LOAD_MODES = ("default", "weights_only", "unsafe")


@dataclasses.dataclass
class Resumable:
    """What a training-style checkpoint restores: models, optimizer states, scheduler states, RNG."""

    model_states: dict[str, Any]
    optimizer_states: dict[str, Any]
    scheduler_states: dict[str, Any]
    rng_state: Optional[torch.Tensor] = None


class Format:
    """One checkpoint format. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    description: str = ""
    suffix: str = ".pt"
    #: what a file of this format can hold: some of "weights", "module", "optimizer", "extras"
    holds: frozenset[str] = frozenset({"weights"})
    #: loading (not only checking) needs the case's Python code importable
    needs_code: bool = False
    #: a torch.load pickle: weights_only load modes apply
    pickled: bool = False
    #: how many models the format holds: "one" or "many"
    models: str = "one"
    #: the loaded module keeps its train/eval flags
    keeps_mode: bool = False
    #: why the format writes more bytes than the tensors span, where it is known to
    view_growth: Optional[str] = None
    #: the file holds its own program (traced, scripted, exported): its outputs are judged against
    #: the saved program's outputs, not the eager model's
    own_program: bool = False

    # -- availability ---------------------------------------------------------------------
    def unavailable(self) -> Optional[str]:
        """None when the running torch can write and read this format, else why not."""
        return None

    @property
    def load_modes(self) -> tuple[str, ...]:
        """Modes the consumer loads with: all three for torch.load pickles, else the one loader."""
        return LOAD_MODES if self.pickled else ("default",)

    def applicable(self, case: Case) -> bool:
        """Whether the format makes sense for a case at all (a GAN pair is not one model)."""
        if case.formats is not None and self.name not in case.formats:
            return False
        return (len(case.models) == 1) == (self.models == "one")

    # -- produce --------------------------------------------------------------------------
    def payload(self, prepared: Prepared) -> Any:
        """The object :meth:`save` writes for ``prepared`` (never mutates it)."""
        raise NotImplementedError

    def save(self, payload: Any, path: Path) -> None:
        """Write ``payload`` to ``path``."""
        raise NotImplementedError

    # -- consume --------------------------------------------------------------------------
    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        """Read ``path`` back; ``mode`` is one of LOAD_MODES."""
        raise NotImplementedError

    def contents(self, obj: Any) -> Any:
        """The structure that is fingerprinted (tensors and scalars) of a payload or loaded object."""
        return obj

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        """Callable models from a loaded object (state_dict formats load into fresh models)."""
        raise NotImplementedError

    def resumable(self, obj: Any) -> Optional[Resumable]:
        """Training state to resume from, for formats that hold optimizer state."""
        return None

    def stored_tensor_bytes(self, path: Path) -> int:
        """Bytes of tensor data in the file (zip containers: the ``data/`` records)."""
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return sum(i.file_size for i in archive.infolist() if _is_tensor_record(i.filename))
        return path.stat().st_size


def _is_tensor_record(name: str) -> bool:
    """Zip records that hold tensor bytes: ``*/data/<key>``, not code, configs or sample inputs."""
    return "/data/" in f"/{name}" and "sample_inputs" not in name and not name.endswith((".pkl", ".json", ".py"))


FORMATS: Registry[Format] = Registry("format", "harness.formats")


def register(fmt: Format) -> Format:
    """Register a format instance; call it at import time of the format's module."""
    return FORMATS.register(fmt)


def load_into_fresh(case: Case, states: dict[str, Any]) -> dict[str, nn.Module]:
    """Fresh models of ``case`` with ``states`` (name -> state_dict) loaded strictly."""
    models = case.fresh_models()
    for name, model in models.items():
        model.load_state_dict(states[name])
    return models
