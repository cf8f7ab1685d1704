"""Corrupted and malicious-looking files: mutate real artifacts and see how each loader copes.

A **mutator** (one module per family in :mod:`harness.corrupt.mutators`, registered in
:data:`MUTATORS`) turns the bytes of a real artifact into a damaged copy: truncations, bit flips,
zip entries removed / renamed / duplicated, pickle opcodes altered, oversized declared lengths.
Mutators are deterministic: the same source, seed and index give the same bytes.

:mod:`harness.corrupt.runner` loads every damaged copy in its own process (forked from a server
that has torch imported, with an address-space limit and a timeout) and classifies the outcome
(:data:`OUTCOMES`). Only copies in a temporary folder are ever loaded; sources are only read.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.corrupt.layout import Layout
from harness.internal.registry import Registry

if TYPE_CHECKING:
    from harness.records import Status

#: every outcome a load of a damaged copy is classified as
OUTCOMES = ("intact", "clean-exception", "silent-corruption", "crash", "hang", "memory-blowup", "unclassified")
#: the file a load process writes in its folder before it loads anything
STARTED_MARKER = "started"
#: record status per outcome: a load that raised cleanly or loaded exactly the manifest's tensors passes
STATUS: dict[str, Status] = {"intact": "pass", "clean-exception": "pass", "silent-corruption": "fail", "crash": "error",
          "hang": "error", "memory-blowup": "error", "unclassified": "error"}


@dataclasses.dataclass
class Source:
    """One real artifact to derive damaged copies from (never written to)."""

    path: Path
    format: str
    case: str
    env_id: str
    producer: dict[str, Any]
    entry: dict[str, Any]
    data: bytes = b""
    layout: Layout = dataclasses.field(default_factory=lambda: Layout("raw", 0))
    #: sealed by this user's produce, or --trust (harness.trust): only then may vetted extra globals be allowed
    trusted: bool = False

    @property
    def label(self) -> str:
        return f"{self.env_id}/{self.entry['file']}"


@dataclasses.dataclass(frozen=True)
class Mutation:
    """Damaged bytes and a label saying exactly what was done (``family:kind@where``)."""

    mutator: str
    label: str
    data: bytes


class Mutator:
    """One family of damage. Subclasses set ``name`` and implement :meth:`mutate`."""

    name: str = ""
    description: str = ""

    def applies(self, source: Source) -> bool:
        """Whether this family can damage ``source`` (zip mutators need a zip, ...)."""
        return True

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        """The ``index``-th damaged copy of ``source`` (``rng`` is seeded for it), or None."""
        raise NotImplementedError

    def make(self, kind: str, where: str, data: bytes) -> Mutation:
        return Mutation(self.name, f"{self.name}:{kind}@{where}", data)


MUTATORS: Registry[Mutator] = Registry("mutator", "harness.corrupt.mutators")


def register(mutator: Mutator) -> Mutator:
    """Register a mutator instance; call it at import time of the mutator's module."""
    return MUTATORS.register(mutator)
