"""Partial loads: a checkpoint's state_dict loaded into a model that is not quite the one saved.

Each module in :mod:`harness.partial.scenarios` registers one :class:`Scenario`: which case's
checkpoint it starts from, how to build the target model, and the user-side fix that makes the
load work. :mod:`harness.partial.expected` computes what the load must report from the two
architectures alone; :mod:`harness.partial.run` holds ``load_state_dict`` to it; the check
``partial:<scenario>`` (:mod:`harness.checks.partial_load`) runs it in every consume environment.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from torch import nn

from harness.case import Case
from harness.internal.registry import Registry

#: user-side fixes a scenario can name (see harness.partial.fixes)
FIXES = ("drop_mismatched", "prefix")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One partial load.

    ``build_target(case)`` returns the model to load into (``case`` is the source case, for
    scenarios that derive the target from it). ``fix`` names the user-side fix the scenario must
    prove works (None: the load needs no fix). ``assign`` loads with ``assign=True`` into a target
    built on the meta device. ``unavailable`` says why this release cannot run it (None: it can).
    """

    name: str
    description: str
    source_cases: tuple[str, ...]
    build_target: Callable[[Case], nn.Module]
    fix: Optional[str] = None
    assign: bool = False
    unavailable: Callable[[], Optional[str]] = lambda: None

    def __post_init__(self) -> None:
        if self.fix is not None and self.fix not in FIXES:
            raise ValueError(f"scenario {self.name}: fix must be one of {FIXES} or None")


SCENARIOS: Registry[Scenario] = Registry("scenario", "harness.partial.scenarios")


def register(scenario: Scenario) -> Scenario:
    """Register a scenario; call it at import time of the scenario's module."""
    return SCENARIOS.register(scenario)
