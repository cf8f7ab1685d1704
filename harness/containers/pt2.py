"""torch.export programs (``torch.export.save``): a ``.pt2`` zip (``archive_format``/``models/``, or the
older ``serialized_exported_program.json`` layout)."""

from __future__ import annotations

from pathlib import Path

from harness.containers import Container, _zip, register


class ExportArchive(Container):
    name = "pt2"
    description = "torch.export .pt2 zip archive"

    shown_as = "export_pt2"
    loader = "torch.export.load"

    def recognises(self, path: Path) -> bool:
        return _zip.is_kind(path, self.name)

    def tensor_bytes(self, path: Path) -> int:
        return _zip.tensor_bytes(path)


PT2 = ExportArchive()
register(PT2)
