"""Shared by the formats written with ``torch.save``: container choice and load modes."""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

import torch

from harness import _cases, compat

WEIGHTS_ONLY_FOR_MODE = {"default": None, "weights_only": True, "unsafe": False}


def save(payload: Any, path: Path, legacy: bool) -> None:
    """``torch.save`` in the zip container, or the pre-1.6 legacy stream when ``legacy``."""
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)


def load(path: Path, mode: str, map_location: Any) -> Any:
    """``torch.load`` in one of the load modes.

    ``unsafe`` (``weights_only=False``) executes arbitrary pickle code. The harness only uses it
    on files it wrote itself, after the consumer has checked the file's hash against the
    manifest (see :func:`harness.manifest.verify_artifact`); never on a user's file.
    """
    kwargs = compat.torch_load_kwargs(WEIGHTS_ONLY_FOR_MODE[mode], map_location)
    if kwargs.get("weights_only", compat.default_weights_only()) is False:
        kwargs["pickle_module"] = _cases.legacy_pickle  # artifacts written before cases/ became harness_cases
    return torch.load(path, **kwargs)


class _StringsOnly(pickle.Unpickler):
    """Unpickles plain data (the legacy storage-key list) and refuses every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a storage-key list")


#: a legacy stream's pickles, in order: magic number, protocol, sys info, the object, storage keys
LEGACY_PICKLES = 5
LEGACY_OBJECT_PICKLE = 3


def legacy_pickle_spans(stream: BinaryIO, count: int = LEGACY_PICKLES) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the first ``count`` pickles of a legacy stream, from its current
    position, walked opcode by opcode so that no code in them runs; the stream is left after the last."""
    spans = []
    for _ in range(count):
        start = stream.tell()
        for _ in pickletools.genops(stream):
            pass
        spans.append((start, stream.tell()))
    return spans


def legacy_tensor_bytes(path: Path) -> int:
    """Bytes of storage data in a legacy (non-zip) ``torch.save`` stream, read without unpickling it.

    The stream is five pickles (magic number, protocol, sys info, the object, the storage keys)
    followed by each storage as an 8-byte element count and its raw bytes. The first four are
    skipped opcode by opcode, so no code in them runs.
    """
    with open(path, "rb") as stream:
        legacy_pickle_spans(stream, LEGACY_OBJECT_PICKLE + 1)
        keys = _StringsOnly(stream).load()
        return path.stat().st_size - stream.tell() - 8 * len(keys)
