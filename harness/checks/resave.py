"""Second round trip: load → save again → load again gives the same fingerprints."""

from __future__ import annotations

from harness.checks import Check, Context, Outcome, failed, passed, register
from harness.checks._compare import fingerprint_differences, summarize
from harness.fingerprint import fingerprint, sharing_groups


class ResaveCheck(Check):
    name = "resave"
    description = "saving what was loaded and loading it again changes nothing"

    def run(self, ctx: Context) -> Outcome:
        path = ctx.workdir / f"resaved{ctx.fmt.suffix}"
        try:
            ctx.fmt.save(ctx.loaded, path)
            again = ctx.fmt.load(path, ctx.load_mode, ctx.map_location, ctx.case)
            second = fingerprint(ctx.fmt.contents(again))
        finally:
            path.unlink(missing_ok=True)
        problems = fingerprint_differences(ctx.actual["tensors"], second["tensors"])
        if sharing_groups(ctx.actual["tensors"]) != sharing_groups(second["tensors"]):
            problems.append("storage sharing changed on the second round trip")
        if ctx.actual["scalars"] != second["scalars"]:
            problems.append("non-tensor values changed on the second round trip")
        if problems:
            return failed(summarize(problems, len(ctx.actual["tensors"])))
        return passed(f"{len(second['tensors'])} tensors unchanged after a second save and load")


register(ResaveCheck())
