"""numpy ``.npz`` archives: a zip of ``<name>.npy`` records (numpy's own format), no torch pickle."""

from __future__ import annotations

from pathlib import Path

from harness.containers import register
from harness.containers._zip import ZipContainer


class NpzArchive(ZipContainer):
    name = "npz"
    description = "numpy .npz archive (a zip of .npy arrays)"

    loader = "numpy.load"

    def tensor_bytes(self, path: Path) -> int:
        import numpy

        with numpy.load(path, allow_pickle=False) as arrays:
            return sum(arrays[name].nbytes for name in arrays.files)


NPZ = NpzArchive()
register(NPZ)
