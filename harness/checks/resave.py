"""Second round trip: load → save again → load again gives the same fingerprints."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.checks import Check, Context, Outcome, failed, passed, register
from harness.checks._compare import fingerprint_differences, summarize
from harness.fingerprint import fingerprint, sharing_groups


class ResaveCheck(Check):
    name = "resave"
    same_for_identical_files = True
    description = "saving what was loaded and loading it again changes nothing"

    def run(self, ctx: Context) -> Outcome:
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="resave-") as folder:
            path = Path(folder) / f"resaved{ctx.fmt.suffix}"
            ctx.fmt.save(ctx.loaded, path)
            second = fingerprint(ctx.fmt.contents(ctx.load(ctx.map_location, path=path)))
        problems = fingerprint_differences(ctx.actual["tensors"], second["tensors"])
        if sharing_groups(ctx.actual["tensors"]) != sharing_groups(second["tensors"]):
            problems.append("storage sharing changed on the second round trip")
        if ctx.actual["scalars"] != second["scalars"]:
            problems.append("non-tensor values changed on the second round trip")
        if problems:
            return failed(summarize(problems, len(ctx.actual["tensors"])))
        return passed(f"{len(second['tensors'])} tensors unchanged after a second save and load")


register(ResaveCheck())
