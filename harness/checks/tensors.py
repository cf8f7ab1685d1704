"""Tensors: same names, dtypes, shapes, strides, requires_grad and bit-identical values
(NaN-aware, by byte hash); non-tensor values and ``state_dict._metadata`` survive too."""

from __future__ import annotations

from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.checks._compare import fingerprint_differences, summarize
from harness.fingerprint import collect_metadata


class TensorsCheck(Check):
    name = "tensors"
    description = "names, dtype, shape, stride, requires_grad and bit-identical values of every tensor"
    every_load_mode = True

    def run(self, ctx: Context) -> Outcome:
        expected, actual = ctx.entry["fingerprint"], ctx.actual
        problems = fingerprint_differences(expected["tensors"], actual["tensors"])
        problems += _scalar_differences(expected["scalars"], actual["scalars"])
        recorded = ctx.entry.get("metadata")
        if recorded is not None and collect_metadata(ctx.contents) != recorded:
            problems.append("state_dict._metadata (module versions) differ")
        if problems:
            return failed(summarize(problems, len(expected["tensors"])))
        if not expected["tensors"] and not expected["scalars"]:
            return skipped("the producer's fingerprint lists no tensors and no values: nothing to compare")
        metadata = ("_metadata not compared (the producer recorded none)" if recorded is None
                    else f"_metadata of {len(recorded)} state_dict(s) identical")
        return passed(f"{len(expected['tensors'])} tensors and {len(expected['scalars'])} values identical; {metadata}")


def _scalar_differences(expected: dict, actual: dict) -> list[str]:
    problems = [f"value {k} missing" for k in sorted(set(expected) - set(actual))]
    problems += [f"value {k} unexpected" for k in sorted(set(actual) - set(expected))]
    problems += [f"value {k}: {expected[k]['value']!r} != {actual[k]['value']!r}"
                 for k in sorted(expected.keys() & actual.keys()) if expected[k] != actual[k]]
    return problems


register(TensorsCheck())
