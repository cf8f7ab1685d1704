"""POSIX tar archives (ustar/GNU): recognised by the ``ustar`` magic at offset 257, not by
``tarfile.is_tarfile`` (which accepts far more) and never mistaken for the zip a member may be."""

from __future__ import annotations

import tarfile
from pathlib import Path

from harness.containers import Container, ContainerError, head, register

MAGIC_OFFSET = 257


class TarArchive(Container):
    name = "tar"
    description = "tar archive (ustar/GNU)"

    def claims(self, head: bytes) -> bool:
        return head[MAGIC_OFFSET:MAGIC_OFFSET + 5] == b"ustar"

    def recognises(self, path: Path) -> bool:
        return self.claims(head(path, MAGIC_OFFSET + 8))

    def tensor_bytes(self, path: Path) -> int:
        return sum(m.size for m in members(path))

    def problems(self, path: Path) -> list[str]:
        try:
            members(path)
        except (ContainerError, tarfile.TarError, OSError) as exc:
            return [str(exc)]
        return []


def members(path: Path) -> list[tarfile.TarInfo]:
    """The archive's regular-file members; a link, a device, an absolute or ``..`` name raises
    :class:`ContainerError` (nothing is ever extracted from such an archive)."""
    with tarfile.open(path, "r:") as archive:
        found = archive.getmembers()
    for member in found:
        parts = Path(member.name).parts
        if not member.isfile() or member.name.startswith("/") or ".." in parts:
            raise ContainerError(f"tar member {member.name!r} is not a plain relative file")
    return found


def read_member(path: Path, name: str) -> bytes:
    """The bytes of one member, read without extracting anything to disk."""
    with tarfile.open(path, "r:") as archive:
        member = archive.getmember(name)
        if not member.isfile():
            raise ContainerError(f"tar member {name!r} is not a plain file")
        stream = archive.extractfile(member)
        if stream is None:
            raise ContainerError(f"tar member {name!r} has no data")
        return stream.read()


TAR = TarArchive()
register(TAR)
