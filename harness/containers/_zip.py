"""What the zip-based containers share: recognising a zip by its first bytes and naming its records.

``zipfile.is_zipfile`` looks for the end-of-central-directory record only, so it is also true for a
tar whose last member is a zip; a checkpoint zip starts with a local file header, and only such a
file is taken for one here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from harness.containers import head

LOCAL_HEADER = b"PK\x03\x04"


def is_zip(path: Path) -> bool:
    """A regular file that starts with a zip local header and has a readable central directory."""
    return head(path, 4) == LOCAL_HEADER and zipfile.is_zipfile(path)


def records(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's records by name with the archive's root folder removed (``archive/data.pkl`` → ``data.pkl``)."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    root = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    return {(i.filename[len(root):] if i.filename.startswith(root) else i.filename): i for i in infos}


def tensor_record(name: str) -> bool:
    """Records that hold tensor bytes: ``*/data/<key>``, not code, configs or sample inputs."""
    return "/data/" in f"/{name}" and "sample_inputs" not in name and not name.endswith((".pkl", ".json", ".py"))


def tensor_bytes(path: Path) -> int:
    """Uncompressed bytes of the archive's tensor records."""
    return sum(i.file_size for name, i in records(path).items() if tensor_record(i.filename))


def is_torchscript(names: dict[str, zipfile.ZipInfo]) -> bool:
    return "constants.pkl" in names and any(n.startswith("code/") for n in names)


def is_export(names: dict[str, zipfile.ZipInfo]) -> bool:
    return ("archive_format" in names or any(n.startswith("models/") for n in names)
            or "serialized_exported_program.json" in names)
