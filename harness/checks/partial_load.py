"""Partial loads: one check per scenario (``partial:<scenario>``), run on the state_dict its case saved.

Every consume environment runs every scenario against artifacts produced anywhere, so the
producer × consumer grid shows whether ``load_state_dict(strict=False)``, its error messages and
``assign=True`` behave the same across releases. See :mod:`harness.partial`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.checks import Check, Context, Outcome, register, skipped
from harness.formats import Format
from harness.partial import SCENARIOS, Scenario
from harness.partial.run import run_scenario


def source_state(fmt: Format, loaded: Any) -> Optional[Mapping[str, Any]]:
    """The model state_dict inside a loaded one-model weights artifact (None for other formats)."""
    state = fmt.resumable(loaded)
    if state is not None:
        return state.model_states.get("model")
    contents = fmt.contents(loaded)
    return contents if isinstance(contents, Mapping) else None


def holds_one_state_dict(fmt: Format) -> bool:
    """One model's weights, not a pickled or compiled program: what users call load_state_dict with."""
    return fmt.models == "one" and "module" not in fmt.holds and "weights" in fmt.holds


class PartialLoadCheck(Check):
    """Runs one scenario on the artifacts of its source cases."""

    needs_case = True

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.name = f"partial:{scenario.name}"
        self.description = scenario.description

    def concerns(self, entry: Mapping[str, Any]) -> bool:
        return entry.get("case") in self.scenario.source_cases

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        if not holds_one_state_dict(fmt):
            return f"{fmt.name} holds no single-model state_dict"
        return None

    def run(self, ctx: Context) -> Outcome:
        reason = self.scenario.unavailable()
        if reason:
            return skipped(reason)
        source = source_state(ctx.fmt, ctx.loaded)
        if source is None:
            return skipped(f"{ctx.fmt.name} gave no state_dict to load")
        assert ctx.case is not None, "needs_case: consume skips this check without the case's code"
        return run_scenario(self.scenario, source, ctx.case)


for _scenario in SCENARIOS:
    register(PartialLoadCheck(_scenario))
