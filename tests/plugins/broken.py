"""Deliberately broken formats and a drifting case: proof that every check can fail.

Loaded as a plugin (``--plugin tests.plugins.broken``) by the produce and consume subprocesses
of tests/test_checks_fail.py; the formats themselves live in :mod:`tests.plugins.damage`.
"""

from __future__ import annotations

import torch

from harness.case import Case
from harness.case import register as register_case
from harness.formats import register
from tests.plugins.damage import DRIFT_VARIABLE, Drifting, NoisyLoad, all_broken

__all__ = ["DRIFT_VARIABLE"]

for broken in all_broken():
    register(broken)

register_case(Case(
    name="drifting",
    exercises="a forward that changes between produce and consume",
    build=Drifting,
    inputs=lambda: (torch.randn(2, 4),),
))

register(NoisyLoad())
