"""torch's legacy (pre-1.6, ``_use_new_zipfile_serialization=False``) stream: five pickles — magic
number, protocol, sys info, the object, the storage keys — then each storage as an 8-byte element
count and its raw bytes. Walked opcode by opcode: nothing in it is unpickled except plain data."""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

from harness.containers import Container, head, register

#: the number ``torch.save`` writes first in a legacy stream
MAGIC = 0x1950A86A20F9469CFC6C
#: a legacy stream's pickles, in order: magic number, protocol, sys info, the object, storage keys
PICKLES = 5
OBJECT_PICKLE = 3


class _PlainData(pickle.Unpickler):
    """Unpickles plain data (the magic number, the storage-key list) and refuses every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a legacy stream's plain-data pickle")


def pickle_spans(stream: BinaryIO, count: int = PICKLES) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the first ``count`` pickles of a legacy stream, from its current
    position, walked opcode by opcode so that no code in them runs; the stream is left after the last."""
    spans = []
    for _ in range(count):
        start = stream.tell()
        for _ in pickletools.genops(stream):
            pass
        spans.append((start, stream.tell()))
    return spans


class LegacyStream(Container):
    name = "legacy"
    description = "torch.save legacy stream (five pickles, then raw storages)"
    loader = "torch.load"
    pickled = True

    def claims(self, head: bytes) -> bool:
        """The first pickle is torch's magic number (any pickle protocol; the rest may be cut short)."""
        if not head.startswith(b"\x80"):
            return False
        try:
            return _PlainData(io.BytesIO(head)).load() == MAGIC
        except Exception:
            return False

    def recognises(self, path: Path) -> bool:
        return self.claims(head(path, 64))

    def tensor_bytes(self, path: Path) -> int:
        """Bytes of storage data, read without unpickling the object: the file after the key list,
        less an 8-byte element count per storage."""
        with open(path, "rb") as stream:
            pickle_spans(stream, OBJECT_PICKLE + 1)
            keys = _PlainData(stream).load()
            return Path(path).stat().st_size - stream.tell() - 8 * len(keys)

    def object_pickle(self, path: Path) -> tuple[int, int]:
        """``(start, end)`` of the pickle that holds the saved object."""
        with open(path, "rb") as stream:
            return pickle_spans(stream, OBJECT_PICKLE + 1)[OBJECT_PICKLE]


LEGACY = LegacyStream()
register(LEGACY)


def legacy_tensor_bytes(path: Path) -> int:
    """Bytes of storage data in a legacy stream (see :meth:`LegacyStream.tensor_bytes`)."""
    return LEGACY.tensor_bytes(path)
