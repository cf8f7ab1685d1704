"""Mode: a loaded module keeps the train/eval flag of every submodule it was saved with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.fingerprint import module_modes
from harness.formats import Format


class ModeCheck(Check):
    name = "mode"
    description = "train/eval flags of every submodule survive"

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        return None if fmt.keeps_mode else f"{fmt.name} does not keep module modes"

    def run(self, ctx: Context) -> Outcome:
        expected = ctx.entry.get("modes")
        if not expected:
            return skipped("the producer recorded no module modes for this artifact: nothing to compare")
        actual = module_modes(ctx.loaded)
        if actual is None:
            return failed(f"the loaded object is a {type(ctx.loaded).__name__}, not a module: its "
                          f"{len(expected)} recorded flags are lost")
        wrong = sorted(name for name in expected if actual.get(name) != expected[name])
        if wrong:
            return failed(f"{len(wrong)} module(s) changed train/eval flag: {', '.join(wrong[:5])}")
        mode = "train" if expected.get("<root>") else "eval"
        return passed(f"{len(expected)} modules keep their flags (root in {mode} mode)")


register(ModeCheck())
