"""``torch.save``'s zip container (the default since 1.6): ``<root>/data.pkl`` plus ``<root>/data/<key>``
records, one per storage, aligned to 64 bytes."""

from __future__ import annotations

import zipfile
from pathlib import Path

from harness.containers import ContainerError, _zip, register


class TorchZip(_zip.ZipContainer):
    name = "torch_zip"
    description = "torch.save zip container (data.pkl and data/<key> records)"
    shown_as = "zip"
    loader = "torch.load"
    pickled = True

    def claims(self, head: bytes) -> bool:
        """Every zip is claimed by torch.save's (the others are recognised by their records, intact)."""
        return _zip.claims(head)


def data_pkl(archive: zipfile.ZipFile) -> str:
    """The name of the archive's one ``data.pkl`` record."""
    names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(names) != 1:
        raise ContainerError(f"expected one data.pkl record in the archive, found {len(names)}")
    return names[0]


def read_pickle(path: Path) -> bytes:
    """The bytes of the archive's ``data.pkl`` (read, never unpickled)."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(data_pkl(archive))


TORCH_ZIP = TorchZip()
register(TORCH_ZIP)
