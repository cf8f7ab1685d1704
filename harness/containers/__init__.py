"""Containers: the byte layouts checkpoints are stored in, one module each.

A container module is the only place that recognises its layout (by content, never by file name)
and walks it: records, tensor bytes, the files of a folder artifact. Formats, ``cuda_tags``,
``corrupt`` and inspection ask this package instead of probing bytes themselves. Recognisers are
mutually exclusive, so :func:`identify` does not depend on the order modules are imported in.

An artifact is a file or, for layouts that are folders (sharded safetensors, DCP), a folder of
regular files; :func:`artifact_files`, :func:`artifact_bytes` and :func:`artifact_hash` cover both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import xxhash

from harness.internal.registry import Registry


class ContainerError(Exception):
    """The artifact is not laid out the way its container requires (a missing shard, a stale index...)."""


class Container:
    """One container layout. Subclasses set ``name``/``description`` and implement ``recognises``."""

    name: str = ""
    description: str = ""
    #: the artifact is a folder of files rather than one file
    folder: bool = False
    #: the name inspection and ``check`` report the container by, where it is not ``name``
    shown_as: str = ""
    #: the loader ``check --torch`` reads it with (a key of :data:`harness.checkfile.loaders.LOADERS`);
    #: None where no loader of a torch release reads it
    loader: Optional[str] = None
    #: a torch pickle: the weights_only question (allowlists, unsafe globals) applies
    pickled: bool = False

    @property
    def label(self) -> str:
        """The name inspection and ``check`` report (``zip`` for torch.save's zip, ``export_pt2``...)."""
        return self.shown_as or self.name

    def recognises(self, path: Path) -> bool:
        """Whether ``path`` is laid out as this container (intact enough to say so)."""
        raise NotImplementedError

    def claims(self, head: bytes) -> bool:
        """Whether a file's first bytes (up to 512) say it is this layout, intact or not: a truncated or
        corrupt file is still claimed by the container its writer meant. Only one container claims any head."""
        return False

    def loader_args(self, path: Path) -> dict[str, str]:
        """What the loader needs besides the path (names inside the layout), as plain strings."""
        return {}

    def tensor_bytes(self, path: Path) -> int:
        """Bytes of tensor data the artifact stores (the whole size where the layout cannot tell)."""
        return artifact_bytes(path)

    def problems(self, path: Path) -> list[str]:
        """Structural problems found without loading anything (empty when intact as far as can be told)."""
        return []


CONTAINERS: Registry[Container] = Registry("container", "harness.containers")


def register(container: Container) -> Container:
    """Register a container instance; call it at import time of the container's module."""
    return CONTAINERS.register(container)


def identify(path: Path) -> Optional[Container]:
    """The container ``path`` is laid out as, or None when no registered container recognises it."""
    path = Path(path)
    for container in CONTAINERS:
        if container.folder == path.is_dir() and container.recognises(path):
            return container
    return None


def claiming(head_bytes: bytes) -> Optional[Container]:
    """The container whose first bytes ``head_bytes`` are (intact or not), or None."""
    return next((c for c in CONTAINERS if c.claims(head_bytes)), None)


def labelled(label: str) -> Optional[Container]:
    """The container inspection reports as ``label`` (see :attr:`Container.label`), or None."""
    return next((c for c in CONTAINERS if c.label == label), None)


def get(name: str) -> Container:
    """The container registered as ``name``."""
    return CONTAINERS.get(name)


def head(path: Path, size: int = 512) -> bytes:
    """The first ``size`` bytes of a regular file (empty for anything else)."""
    if not Path(path).is_file():
        return b""
    with open(path, "rb") as stream:
        return stream.read(size)


def artifact_files(path: Path) -> Iterator[Path]:
    """The regular files of an artifact: the file itself, or every file under a folder, sorted.

    A symbolic link or anything else that is not a regular file inside a folder artifact raises
    :class:`ContainerError`: a folder artifact is contained in itself and never points elsewhere.
    """
    path = Path(path)
    if not path.is_dir():
        yield path
        return
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            file = Path(folder) / name
            if file.is_symlink() or not file.is_file():
                raise ContainerError(f"{file}: not a regular file inside the folder artifact {path}")
            yield file


def artifact_bytes(path: Path) -> int:
    """Total size in bytes of an artifact's files."""
    return sum(file.stat().st_size for file in artifact_files(path))


def artifact_hash(path: Path, chunk: int = 16 * 1024 * 1024) -> str:
    """xxh3-128 of a file's bytes; for a folder, of every file's relative name and bytes, in order."""
    path = Path(path)
    if not path.is_dir():
        return _file_hash(path, chunk)
    digest = xxhash.xxh3_128()
    for file in artifact_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_file_hash(file, chunk)}\n".encode())
    return digest.hexdigest()


def _file_hash(path: Path, chunk: int) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
