"""Partial-load scenarios whose target misbehaves the way a regressed release might.

Loaded as a plugin by tests/test_partial.py: each target's ``load_state_dict`` or
``_load_from_state_dict`` departs from PyTorch's contract in one way, so the ``partial:<name>``
check must report ``fail`` while the honest scenarios beside them pass.
"""

from __future__ import annotations

from torch import nn

from harness.case import Case
from harness.partial import Scenario, register
from tests.plugins.partial_damage import (
    GarblesSizeMismatch,
    HidesUnexpected,
    OmitsAKey,
    SkipsBiasNet,
)


def _hides(case: Case) -> nn.Module:
    return HidesUnexpected()


def _skips(case: Case) -> nn.Module:
    return SkipsBiasNet()


register(Scenario(name="broken_hides_unexpected", description="target under-reports unexpected keys",
                  source_cases=("simple",), build_target=_hides))
register(Scenario(name="broken_skips_bias", description="target does not load its bias",
                  source_cases=("simple",), build_target=_skips))
register(Scenario(name="broken_omits_a_key", description="target's strict=True error leaves a key out",
                  source_cases=("simple",), build_target=lambda case: OmitsAKey()))
register(Scenario(name="broken_garbles_size_mismatch", description="target's size-mismatch message has the "
                  "shapes swapped", source_cases=("simple",), build_target=lambda case: GarblesSizeMismatch(),
                  fix="drop_mismatched"))
