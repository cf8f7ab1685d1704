"""Checkpoint formats: how a prepared case is saved, and how the artifact is loaded back.

Each module in this package defines one or more :class:`Format` subclasses and registers an
instance with :func:`register`. A format declares what it can hold, whether loading needs the
case's code, and its :class:`Capabilities`: the load modes, ``map_location`` forms and sources
(path, BytesIO, mmap) its loader takes, whether its storages can be retagged to CUDA, and its
container (a :mod:`harness.containers` module). :meth:`Format.load` with a :class:`LoadRequest`
is the one way anything — consume, the checks, corrupt, bench — reads an artifact back.
The payload a format saves and the object its loader returns are of the same kind, so
``save(load(path))`` is the second round trip.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from harness import containers
from harness.case import Case, Prepared
from harness.internal.registry import Registry

#: Load modes: the release's default ``torch.load``, ``weights_only=True`` and ``weights_only=False``.
#: ``unsafe`` (weights_only=False) runs arbitrary pickle code: the consumer uses it only on the
#: harness's own artifacts, after verifying each file's hash against its manifest.
LOAD_MODES = ("default", "weights_only", "unsafe")

#: Where a loader reads from: the artifact's path, its bytes in a BytesIO, or the path mapped (mmap=True).
SOURCES = ("path", "BytesIO", "mmap")
#: ``map_location`` forms: None (as saved), a string, a torch.device, a dict, a callable, the string 'meta'.
MAP_LOCATION_FORMS = ("none", "str", "device", "dict", "callable", "meta")


def map_location_form(value: Any) -> str:
    """The form of a ``map_location`` value, one of MAP_LOCATION_FORMS."""
    if value is None:
        return "none"
    if isinstance(value, str):
        return "meta" if value == "meta" else "str"
    if isinstance(value, torch.device):
        return "device"
    if isinstance(value, dict):
        return "dict"
    return "callable"


class CannotSave(Exception):
    """This case cannot be written in this format by this release (an exporter refuses the model): the
    producer records a skip with the message as its reason."""


class Unsupported(NotImplementedError):
    """The request asks for something the format's capabilities do not offer."""


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a format's loader takes. Checks decide whether they apply from these, not from the format's name."""

    #: load modes the consumer loads with (all three for torch.load pickles, else the one loader)
    load_modes: tuple[str, ...] = ("default",)
    #: map_location forms the loader accepts (see MAP_LOCATION_FORMS)
    map_locations: frozenset[str] = frozenset({"none"})
    #: where the loader can read from (see SOURCES)
    sources: frozenset[str] = frozenset({"path"})
    #: storages carry a device tag that :mod:`harness.cuda_tags` can rewrite (torch.save pickles)
    cuda_retaggable: bool = False
    #: the :mod:`harness.containers` name the artifact is laid out as
    container: str = ""
    #: loading runs a full unpickle whatever the mode (a DCP folder's .metadata): trusted artifacts only
    unpickles: bool = False

    @property
    def pickled(self) -> bool:
        """``weights_only`` load modes apply."""
        return "weights_only" in self.load_modes


#: a torch.save pickle: every mode, every map_location form, path and BytesIO (mmap for the zip container)
TORCH_PICKLE_FORMS = frozenset(MAP_LOCATION_FORMS)


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """One load: the mode, the ``map_location``, the source and the case (for formats that need its code)."""

    mode: str = "default"
    map_location: Any = None
    source: str = "path"
    case: Optional[Case] = None
    #: the artifact is one the harness wrote and whose hash it verified: only then may a load run a
    #: full unpickle (the ``unsafe`` mode, or a format whose capabilities say ``unpickles``)
    trusted: bool = False


Source = Union[Path, io.BytesIO]


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
    #: what the loader takes (see :class:`Capabilities`)
    capabilities: Capabilities = Capabilities()
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
        return self.capabilities.load_modes

    @property
    def pickled(self) -> bool:
        """A torch.load pickle: weights_only load modes apply."""
        return self.capabilities.pickled

    @property
    def container(self) -> containers.Container:
        """The container module the artifact is laid out as."""
        return containers.get(self.capabilities.container)

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
    def open(self, path: Path, request: LoadRequest = LoadRequest()) -> Any:
        """Read the artifact at ``path`` back as ``request`` asks: the one door to an artifact.

        Everything that reads an artifact (consume, the checks, corrupt, bench) comes through here. A
        request outside the format's capabilities raises :class:`Unsupported` before anything is read.
        """
        caps = self.capabilities
        if request.mode not in caps.load_modes:
            raise Unsupported(f"{self.name} is not loaded in mode {request.mode!r} "
                              f"(modes: {', '.join(caps.load_modes)})")
        if request.source not in caps.sources:
            raise Unsupported(f"{self.name} cannot be read from {request.source} "
                              f"(sources: {', '.join(s for s in SOURCES if s in caps.sources)})")
        if (request.mode == "unsafe" or caps.unpickles) and not request.trusted:
            raise Unsupported(f"loading {self.name} in mode {request.mode!r} runs a full unpickle: only for artifacts "
                              "the harness wrote and verified (a trusted request)")
        form = map_location_form(request.map_location)
        if form not in caps.map_locations:
            raise Unsupported(f"{self.name}'s loader takes no {form} map_location")
        source: Source = io.BytesIO(Path(path).read_bytes()) if request.source == "BytesIO" else Path(path)
        mapped = {"mmap": True} if request.source == "mmap" else {}
        return self.load(source, request.mode, request.map_location, request.case, **mapped)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        """The format's loader, called only by :meth:`open` within the capabilities: ``source`` is the
        artifact's path, or a BytesIO of its bytes. A format whose sources include ``mmap`` also takes
        ``mmap=True`` (passed only when the request asks to map the file)."""
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
        """Bytes of tensor data in the artifact, as its container counts them."""
        return self.container.tensor_bytes(path)

    def retag(self, path: Path, target: Path, location: str) -> list[Any]:
        """A copy of the artifact at ``target`` whose storages are tagged ``location`` (``cuda_retaggable`` only)."""
        if not self.capabilities.cuda_retaggable:
            raise Unsupported(f"{self.name}'s storages carry no device tag to rewrite")
        from harness import cuda_tags

        return cuda_tags.retag(path, target, location)

    def storage_locations(self, path: Path) -> list[Any]:
        """The storage records of the artifact as written (``cuda_retaggable`` only)."""
        from harness import cuda_tags

        return cuda_tags.storage_locations(path)


FORMATS: Registry[Format] = Registry("format", "harness.formats")


def register(fmt: Format) -> Format:
    """Register a format instance; call it at import time of the format's module."""
    return FORMATS.register(fmt)


def load_into_fresh(case: Case, states: dict[str, Any]) -> dict[str, nn.Module]:
    """Fresh models of ``case`` with ``states`` (name -> state_dict) loaded strictly (so into
    :meth:`~harness.case.Case.models_to_fill`: the strict load writes every value)."""
    models = case.models_to_fill()
    for name, model in models.items():
        model.load_state_dict(states[name])
    return models
