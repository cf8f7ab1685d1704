"""Outputs: forward on the producer's fixed inputs gives the producer's outputs — bit for bit in
the same torch on the same device, within the case's tolerance across releases or devices."""

from __future__ import annotations

from harness.case import forward_outputs
from harness.checks import Check, Context, Outcome, failed, passed, register
from harness.checks._compare import fingerprint_differences, max_abs_difference
from harness.fingerprint import describe_tensor


class OutputsCheck(Check):
    name = "outputs"
    description = "forward outputs on the fixed inputs match the producer's"
    needs_case = True

    def run(self, ctx: Context) -> Outcome:
        stored = ctx.stored
        actual = forward_outputs(ctx.modules, stored["inputs"])
        expected = stored["outputs"]
        if set(actual) != set(expected):
            return failed(f"output structure differs: {sorted(expected)} != {sorted(actual)}")
        if ctx.same_numerics:
            described = {name: describe_tensor(t) for name, t in actual.items()}
            reference = ctx.entry.get("outputs") or ctx.case_section["outputs"]  # a saved program's own outputs
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
