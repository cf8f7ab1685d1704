"""numpy ``.npz`` archives: a zip of ``<name>.npy`` records (numpy's own format), no torch pickle."""

from __future__ import annotations

from pathlib import Path

from harness.containers import Container, _zip, register


class NpzArchive(Container):
    name = "npz"
    description = "numpy .npz archive (a zip of .npy arrays)"

    loader = "numpy.load"

    def recognises(self, path: Path) -> bool:
        return _zip.is_kind(path, self.name)

    def tensor_bytes(self, path: Path) -> int:
        import numpy

        with numpy.load(path, allow_pickle=False) as arrays:
            return sum(arrays[name].nbytes for name in arrays.files)


NPZ = NpzArchive()
register(NPZ)
