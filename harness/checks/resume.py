"""Resume: k steps → save → load into fresh models and optimizers → one more step equals k+1
uninterrupted steps: bitwise against the producer's fingerprint in the same environment; across
releases or devices, within the case's ``resume_atol`` of the producer's stored next-step state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from harness.checks import Check, Context, Outcome, register
from harness.checks._resume import judge
from harness.formats import Format


class ResumeCheck(Check):
    name = "resume"
    description = "one step after resuming equals one more uninterrupted step"
    #: the resumed step is judged after the second round trip has fingerprinted the same load
    after = ("resave",)
    needs_case = True

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        return None if "optimizer" in fmt.holds else f"{fmt.name} holds no optimizer state"

    def run(self, ctx: Context) -> Outcome:
        return judge(ctx, ctx.loaded)


register(ResumeCheck())
