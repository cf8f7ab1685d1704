"""torch.export programs (``torch.export.save``): a ``.pt2`` zip (``archive_format``/``models/``, or the
older ``serialized_exported_program.json`` layout)."""

from __future__ import annotations

from harness.containers import register
from harness.containers._zip import ZipContainer


class ExportArchive(ZipContainer):
    name = "pt2"
    description = "torch.export .pt2 zip archive"
    shown_as = "export_pt2"
    loader = "torch.export.load"


PT2 = ExportArchive()
register(PT2)
