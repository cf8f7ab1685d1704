"""``map_location``: the artifact as written, loaded with every ``map_location`` form its format's
loader takes (str, device, dict, callable, 'meta') from every source it reads (path, mmap; BytesIO with the
first form, see :data:`harness.checks._devices.FIRST_FORM_ONLY_SOURCES`), through the format; each load
bit-identical to the manifest and on the device the form names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from harness.checks import Check, Context, Outcome, _devices, failed, passed, register
from harness.checks._compare import summarize
from harness.formats import Format


class MapLocationCheck(Check):
    name = "map_location"
    same_for_identical_files = True
    description = ("every map_location form (str, device, dict, callable, 'meta') from a path and mmap; "
                   "'cpu' from BytesIO")

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        return _devices.applies(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        count, problems = _devices.every_form(ctx)
        if problems:
            return failed(summarize(problems, count, "loads"))
        return passed(f"{_devices.summary(ctx.fmt, count)} from {_devices.sources_text(ctx.fmt)}")


register(MapLocationCheck())
