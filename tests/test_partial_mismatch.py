"""Issue 11: strict=False with missing keys *and* size mismatches (a model grown by a layer, with a new head).

torch's strict=False error lists only the size mismatches; the check must not demand the missing keys in
it (the old false alarm), and a failing scenario still says its plan and its fix.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.case import Case
from harness.partial import Scenario, expected
from harness.partial import run as partial_run


class Encoder(nn.Module):
    def __init__(self, layers: int, labels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(layers))
        self.head = nn.Linear(4, labels)


def _case() -> Case:
    return Case("toy_encoder", "-", lambda: Encoder(2, 2), lambda: (torch.zeros(1, 4),))


SCENARIO = Scenario("grown", "2→3 layers, 2→5 labels", ("toy_encoder",), lambda case: Encoder(3, 5),
                    fix="drop_mismatched")


def test_missing_and_mismatched_together_pass() -> None:
    outcome = partial_run.run_scenario(SCENARIO, Encoder(2, 2).state_dict(), _case())
    assert outcome.status == "pass", outcome.detail
    assert "layers.2.weight" in outcome.detail and "size mismatch for head.weight" in outcome.detail


def test_strict_false_message_really_lacks_the_missing_keys() -> None:
    """The premise of the fix, held to the installed torch: if torch starts naming them, this says so."""
    try:
        Encoder(3, 5).load_state_dict(Encoder(2, 2).state_dict(), strict=False)
    except RuntimeError as exc:
        assert "size mismatch for head.weight" in str(exc) and "layers.2.weight" not in str(exc)
    else:
        pytest.fail("strict=False loaded a size-mismatched head")


def test_a_failing_scenario_still_reports_plan_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = partial_run.plan

    def no_mismatch(source, target):  # type: ignore[no-untyped-def]
        right = real(source, target)
        return expected.LoadPlan(right.missing, right.unexpected, {}, right.loaded)

    monkeypatch.setattr(partial_run, "plan", no_mismatch)
    outcome = partial_run.run_scenario(SCENARIO, Encoder(2, 2).state_dict(), _case())
    assert outcome.status == "fail"
    assert "plan: " in outcome.detail and "fix: drop_mismatched" in outcome.detail, outcome.detail
