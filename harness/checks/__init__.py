"""Checks: each judges one loaded artifact against its manifest entry.

A check module defines a :class:`Check` subclass and registers an instance. ``applies`` says
which formats it is for (returning a skip reason otherwise); ``run`` returns an :class:`Outcome`.
An exception escaping ``run`` becomes an ``error`` record, never a crash of the run.

Checks run in the order their ``after`` declarations give (a check runs after every check it names;
ties keep registration order; a cycle is an error), never in file-name order. Each gets a read-only
:class:`Context`: ``entry`` and ``case_section`` are read-only mappings, and a check that changes the
loaded object in place declares ``mutates_loaded`` and is handed its own deep copy.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case
from harness.errors import HarnessError
from harness.fingerprint import fingerprint
from harness.formats import Format, LoadRequest
from harness.internal.registry import Registry
from harness.manifest import contained_path


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``status`` is pass, fail or skip; ``detail`` says in one line what differed or why skipped."""

    status: str
    detail: str = ""


def passed(detail: str = "") -> Outcome:
    """The check held; ``detail`` says what was compared."""
    return Outcome("pass", detail)


def failed(detail: str) -> Outcome:
    """The check found a difference; ``detail`` says what differed."""
    return Outcome("fail", detail)


def skipped(reason: str) -> Outcome:
    """Nothing to compare here; ``reason`` says why (never report a pass instead)."""
    return Outcome("skip", reason)


def read_only(value: Any) -> Any:
    """``value`` with every dict, at any depth, behind a read-only :class:`types.MappingProxyType`."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({key: read_only(item) for key, item in value.items()})
    if isinstance(value, list):
        return [read_only(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a check may look at for one artifact loaded in one mode; read-only.

    ``entry`` (the manifest entry) and ``case_section`` (the manifest's section for the case) are
    read-only mappings. ``loaded`` is shared by the checks of one load: a check must not change it
    in place unless it declares :attr:`Check.mutates_loaded` (then it gets its own copy, see :meth:`for_check`).
    """

    fmt: Format
    entry: Mapping[str, Any]
    case_section: Mapping[str, Any]
    artifact: Path
    root: Path
    loaded: Any
    load_mode: str
    case: Optional[Case]
    case_missing: Optional[str]
    producer: dict[str, Any]
    consumer: dict[str, Any]
    same_numerics: bool
    map_location: Any
    workdir: Path
    #: sealed by this user's produce or vouched for (--trust): only then may a load be a full unpickle
    trusted: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry", read_only(self.entry))
        object.__setattr__(self, "case_section", read_only(self.case_section))

    def for_check(self, check: Check) -> Context:
        """This context as ``check`` may see it: itself, or a copy with its own deep copy of ``loaded``
        when the check changes the loaded object in place."""
        if not check.mutates_loaded:
            return self
        return dataclasses.replace(self, loaded=copy.deepcopy(self.loaded))

    def load(self, map_location: Any = None, source: str = "path", path: Optional[Path] = None) -> Any:
        """Load the artifact again — or ``path``, a copy made from it in ``workdir`` — through the format,
        in this context's load mode: a check never opens an artifact or calls a loader itself."""
        request = LoadRequest(self.load_mode, map_location, source, self.case, trusted=self.trusted)
        return self.fmt.open(path or self.artifact, request)

    @functools.cached_property
    def contents(self) -> Any:
        """What the format's fingerprint covers, from the loaded object."""
        return self.fmt.contents(self.loaded)

    @functools.cached_property
    def actual(self) -> dict[str, Any]:
        """The fingerprint of what was loaded, comparable with ``entry["fingerprint"]``."""
        return fingerprint(self.contents)

    @functools.cached_property
    def modules(self) -> dict[str, nn.Module]:
        """The loaded models ready to call (state_dict formats loaded into fresh models)."""
        # None only where the case's code is missing, and consume runs only code-free formats then
        return self.fmt.modules(self.loaded, self.case)  # type: ignore[arg-type]

    @functools.cached_property
    def stored(self) -> dict[str, Any]:
        """The producer's ``{"inputs", "outputs"[, "next_step"]}``, read once from the stored tensor file."""
        # inside the folder (never ../ or a symlink out); a release without weights_only would fully
        # unpickle it, which consume refuses for untrusted artifacts (compat.RefuseFullUnpickle)
        path = contained_path(self.root, self.case_section.get("outputs_file"), "outputs_file")
        return torch.load(path, **compat.torch_load_kwargs(True if compat.has_weights_only() else None, "cpu"))


class Check:
    """Base class: set ``name`` and ``needs_case``; override ``applies`` and ``run``."""

    name: str = ""
    description: str = ""
    #: the check needs the case's Python code (fresh models, inputs)
    needs_case: bool = False
    #: run under every load mode that loads; otherwise only under the first (a pickle loaded three
    #: ways gives the same object each time, which the per-mode tensors check proves)
    every_load_mode: bool = False
    #: names of checks that must run before this one (a missing name is ignored; a cycle is an error)
    after: tuple[str, ...] = ()
    #: the check changes ``ctx.loaded`` in place: it is given its own deep copy
    mutates_loaded: bool = False
    #: the verdict depends only on the artifact's bytes, its entry's fingerprint, the case, the load mode, the
    #: map_location and this consumer: never on what the producer stored beside it (outputs, next step) or on
    #: the producer's environment. Consume then runs it once per byte-identical file (two releases often write
    #: the same bytes) and gives the others its outcome, saying so (:class:`harness.consume.Reuse`).
    same_for_identical_files: bool = False

    def concerns(self, entry: Mapping[str, Any]) -> bool:
        """Whether the check has anything to say about this artifact at all; False writes no record.

        Use it for checks tied to particular cases (a partial-load scenario starts from one case), so
        that every other artifact does not carry a skip record that only says "not this case".
        """
        return True

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        """None when the check applies to this format and entry, else the skip reason."""
        return None

    def run(self, ctx: Context) -> Outcome:
        raise NotImplementedError


def ordered(checks: list[Check]) -> list[Check]:
    """``checks`` sorted so that each comes after every check its ``after`` names; otherwise in the given order.

    A cycle raises :class:`HarnessError` naming the checks in it.
    """
    names = {c.name for c in checks}
    waiting = {c.name: {n for n in c.after if n in names and n != c.name} for c in checks}
    out: list[Check] = []
    pending = list(checks)
    while pending:
        ready = next((c for c in pending if not waiting[c.name]), None)
        if ready is None:
            cycle = ", ".join(f"{c.name} after {sorted(waiting[c.name])}" for c in pending)
            raise HarnessError(f"the checks' declared order has a cycle: {cycle}")
        pending.remove(ready)
        out.append(ready)
        for deps in waiting.values():
            deps.discard(ready.name)
    return out


class CheckRegistry(Registry[Check]):
    """The check registry: iterates in dependency order (:func:`ordered`)."""

    def __iter__(self) -> Iterator[Check]:
        return iter(ordered(list(super().__iter__())))

    def names(self) -> list[str]:
        return [c.name for c in self]


CHECKS: CheckRegistry = CheckRegistry("check", "harness.checks")


def register(check: Check) -> Check:
    """Register a check instance; call it at import time of the check's module."""
    return CHECKS.register(check)
