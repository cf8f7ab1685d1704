"""``torch.distributed.checkpoint`` folders: a ``.metadata`` file (a pickle of the checkpoint's
tensor and byte layout, which DCP's own reader unpickles in full) and one ``__<rank>_<n>.distcp`` file
per writer holding the tensor bytes.

Because ``.metadata`` is read with plain ``pickle.load``, loading a DCP folder runs whatever code that
pickle names: only folders the harness wrote itself, hash-verified, are ever loaded (see
:mod:`harness.formats.dcp`). This module only looks at file names and sizes.
"""

from __future__ import annotations

from pathlib import Path

from harness.containers import Container, register

METADATA = ".metadata"
DATA_SUFFIX = ".distcp"


def data_files(folder: Path) -> list[Path]:
    """The folder's ``.distcp`` data files, sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix == DATA_SUFFIX and p.is_file() and not p.is_symlink())


class DcpFolder(Container):
    name = "dcp"
    description = "torch.distributed.checkpoint folder (.metadata pickle + __<rank>_<n>.distcp data files)"
    folder = True
    loader = "dcp"

    def recognises(self, path: Path) -> bool:
        return (Path(path) / METADATA).is_file() and bool(data_files(path))

    def tensor_bytes(self, path: Path) -> int:
        return sum(p.stat().st_size for p in data_files(path))

    def problems(self, path: Path) -> list[str]:
        found = [] if (Path(path) / METADATA).is_file() else [f"no {METADATA} file"]
        return found + ([] if data_files(path) else [f"no {DATA_SUFFIX} data file"])


DCP = DcpFolder()
register(DCP)
