"""What the zip-based containers share: recognising a zip by its first bytes and naming its records.

``zipfile.is_zipfile`` looks for the end-of-central-directory record only, so it is also true for a
tar whose last member is a zip; a checkpoint zip starts with a local file header, and only such a
file is taken for one here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable, Optional

from harness.containers import Container, head

LOCAL_HEADER = b"PK\x03\x04"
#: the end-of-central-directory record, and its zip64 form (archives over 4 GiB or 65535 records)
EOCD = b"PK\x05\x06"
ZIP64_EOCD = b"PK\x06\x06"


#: the object pickle of torch.save's zip (and a TorchScript archive's module pickle)
DATA_PKL = "data.pkl"
#: TorchScript's pickles: the module, then the constants it was compiled with
TORCHSCRIPT_PICKLES = (DATA_PKL, "constants.pkl")
#: the record naming the older (≤ 2.7) torch.export layout: a JSON program beside torch.save'd state
EXPORT_PROGRAM = "serialized_exported_program.json"


def claims(first: bytes) -> bool:
    """The bytes start with a zip local header (the archive may still be cut short or damaged)."""
    return first.startswith(LOCAL_HEADER)


def has_directory(path: Path) -> bool:
    """The archive's end-of-central-directory record is there (a zip cut short has none)."""
    return zipfile.is_zipfile(path)


def is_zip(path: Path) -> bool:
    """A regular file that starts with a zip local header and has a readable central directory."""
    return claims(head(path, 4)) and has_directory(path)


def inside(names: list[str]) -> dict[str, str]:
    """Record names with the archive's root folder removed (``archive/data.pkl`` → ``data.pkl``) → full names."""
    root = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    return {(n[len(root):] if n.startswith(root) else n): n for n in names}


def records(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's records by name with the archive's root folder removed (see :func:`inside`)."""
    with zipfile.ZipFile(path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
    return {short: infos[full] for short, full in inside(list(infos)).items()}


def kind(names: Iterable[str]) -> Optional[str]:
    """Which zip container record names (root removed) make: torchscript, pt2, torch_zip, npz, or None.

    Exclusive by construction: a TorchScript archive also holds ``data.pkl`` and is TorchScript only."""
    names = set(names)
    if is_torchscript(names):
        return "torchscript"
    if is_export(names):
        return "pt2"
    if DATA_PKL in names:
        return "torch_zip"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    return None


def storage_record(key: str) -> str:
    """The record (root removed) holding the bytes of the storage a pickle names by ``key``."""
    return f"data/{key}"


def tensor_record(name: str) -> bool:
    """Records that hold tensor bytes: ``*/data/<key>``, not code, configs or sample inputs."""
    return "/data/" in f"/{name}" and "sample_inputs" not in name and not name.endswith((".pkl", ".json", ".py"))


def tensor_bytes(path: Path) -> int:
    """Uncompressed bytes of the archive's tensor records."""
    return sum(i.file_size for name, i in records(path).items() if tensor_record(i.filename))


def is_torchscript(names: Iterable[str]) -> bool:
    """TorchScript's records: ``constants.pkl`` and ``code/``."""
    names = set(names)
    return TORCHSCRIPT_PICKLES[1] in names and any(n.startswith("code/") for n in names)


def is_pt2_archive(names: Iterable[str]) -> bool:
    """The PT2 archive's records (``archive_format``, ``models/``), torch.export.save's layout since 2.8."""
    names = set(names)
    return "archive_format" in names or any(n.startswith("models/") for n in names)


def is_export(names: Iterable[str]) -> bool:
    """torch.export's records: the PT2 archive or the older layout (:data:`EXPORT_PROGRAM`)."""
    names = set(names)
    return is_pt2_archive(names) or EXPORT_PROGRAM in names


def is_kind(path: Path, name: str) -> bool:
    """``path`` is a readable zip whose records make the container ``name`` (see :func:`kind`)."""
    return is_zip(path) and kind(records(path)) == name


class ZipContainer(Container):
    """A zip container: recognised when :func:`kind` of its records is its ``name``; tensor bytes are
    its ``data/`` records' (a subclass with another layout of tensor data overrides that)."""

    def recognises(self, path: Path) -> bool:
        return is_kind(path, self.name)

    def tensor_bytes(self, path: Path) -> int:
        return tensor_bytes(path)
