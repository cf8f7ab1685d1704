"""Checks: each judges one loaded artifact against its manifest entry.

A check module defines a :class:`Check` subclass and registers an instance. ``applies`` says
which formats it is for (returning a skip reason otherwise); ``run`` returns an :class:`Outcome`.
An exception escaping ``run`` becomes an ``error`` record, never a crash of the run.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case
from harness.fingerprint import fingerprint
from harness.formats import Format
from harness.internal.registry import Registry


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``status`` is pass, fail or skip; ``detail`` says in one line what differed or why skipped."""

    status: str
    detail: str = ""


def passed(detail: str = "") -> Outcome:
    return Outcome("pass", detail)


def failed(detail: str) -> Outcome:
    return Outcome("fail", detail)


def skipped(reason: str) -> Outcome:
    return Outcome("skip", reason)


@dataclasses.dataclass
class Context:
    """Everything a check may look at for one artifact loaded in one mode."""

    fmt: Format
    entry: dict[str, Any]
    case_section: dict[str, Any]
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
        return self.fmt.modules(self.loaded, self.case)

    @functools.cached_property
    def stored(self) -> dict[str, Any]:
        """The producer's ``{"inputs", "outputs"[, "next_step"]}``, read once from the stored tensor file."""
        path = self.root / self.case_section["outputs_file"]
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

    def concerns(self, entry: dict[str, Any]) -> bool:
        """Whether the check has anything to say about this artifact at all; False writes no record.

        Use it for checks tied to particular cases (a partial-load scenario starts from one case), so
        that every other artifact does not carry a skip record that only says "not this case".
        """
        return True

    def applies(self, fmt: Format, entry: dict[str, Any]) -> Optional[str]:
        """None when the check applies to this format and entry, else the skip reason."""
        return None

    def run(self, ctx: Context) -> Outcome:
        raise NotImplementedError


CHECKS: Registry[Check] = Registry("check", "harness.checks")


def register(check: Check) -> Check:
    """Register a check instance; call it at import time of the check's module."""
    return CHECKS.register(check)
