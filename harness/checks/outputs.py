"""Outputs: forward on the producer's fixed inputs gives the producer's outputs — bit for bit in
the same torch on the same device, within the case's tolerance across releases or devices."""

from __future__ import annotations

from harness.case import forward_outputs
from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.checks._compare import fingerprint_differences, max_abs_difference
from harness.fingerprint import describe_tensor


class OutputsCheck(Check):
    name = "outputs"
    description = "forward outputs on the fixed inputs match the producer's"
    needs_case = True

    def run(self, ctx: Context) -> Outcome:
        stored = ctx.stored
        expected = stored.get("outputs")
        if not expected:
            return skipped("the producer stored no forward outputs for this case: nothing to compare")
        actual = forward_outputs(ctx.modules, stored["inputs"])
        if set(actual) != set(expected):
            return failed(f"output structure differs: {sorted(expected)} != {sorted(actual)}")
        if ctx.same_numerics:
            described = {name: describe_tensor(t) for name, t in actual.items()}
            # a saved program is judged against its own outputs, recorded per entry; others against the case's
            reference = ctx.entry["outputs"] if "outputs" in ctx.entry else ctx.case_section.get("outputs")
            if not reference:
                return skipped("the manifest records no output hashes for this artifact: nothing to compare bitwise")
            problems = fingerprint_differences(reference, described, ("dtype", "shape", "hash"))
            if problems:
                worst, where = max_abs_difference(expected, actual)
                return failed(f"not bit-identical in the same environment: max abs diff {worst:.3g} at {where}")
            return passed(f"{len(expected)} output(s) bit-identical")
        worst, where = max_abs_difference(expected, actual)
        atol = float(ctx.case_section["atol"])
        if worst > atol:
            return failed(f"max abs diff {worst:.3g} at {where} exceeds atol {atol:g} across environments")
        return passed(f"max abs diff {worst:.3g} within atol {atol:g} across environments")


register(OutputsCheck())
