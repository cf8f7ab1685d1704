"""Partial-load scenarios whose target misbehaves the way a regressed release might.

Loaded as a plugin by tests/test_partial.py: each target's ``load_state_dict`` or
``_load_from_state_dict`` departs from PyTorch's contract in one way, so the ``partial:<name>``
check must report ``fail`` while the honest scenarios beside them pass.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from harness.case import Case
from harness.partial import Scenario, register


class HidesUnexpected(nn.Module):
    """Reports no unexpected keys, whatever the checkpoint holds (the simple case's ``fc.*`` are unexpected here)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(10, 2)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        result = super().load_state_dict(state_dict, strict=False, **kwargs)
        result.unexpected_keys.clear()
        if strict and result.missing_keys:
            raise RuntimeError("Error(s) in loading state_dict: missing keys (names withheld)")
        return result


class SkipsBias(nn.Linear):
    """Silently keeps its own bias instead of the checkpoint's (a lost copy)."""

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        saved = self.bias.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.bias.data.copy_(saved + 1.0)


class SkipsBiasNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = SkipsBias(10, 2)


def _hides(case: Case) -> nn.Module:
    return HidesUnexpected()


def _skips(case: Case) -> nn.Module:
    return SkipsBiasNet()


register(Scenario(name="broken_hides_unexpected", description="target under-reports unexpected keys",
                  source_cases=("simple",), build_target=_hides))
register(Scenario(name="broken_skips_bias", description="target does not load its bias",
                  source_cases=("simple",), build_target=_skips))
