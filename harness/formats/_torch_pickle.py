"""Shared by the formats written with ``torch.save``: container choice, capabilities and load modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness import _cases, compat
from harness.containers.legacy import legacy_tensor_bytes  # noqa: F401
from harness.formats import LOAD_MODES, SOURCES, TORCH_PICKLE_FORMS, Capabilities, Source

WEIGHTS_ONLY_FOR_MODE = {"default": None, "weights_only": True, "unsafe": False}


def capabilities(legacy: bool) -> Capabilities:
    """A torch.save pickle: every load mode and map_location form; mmap only for the zip container
    and only where this torch.load has it."""
    sources = {"path", "BytesIO"} | ({"mmap"} if compat.has_mmap() and not legacy else set())
    return Capabilities(load_modes=LOAD_MODES, map_locations=TORCH_PICKLE_FORMS,
                        sources=frozenset(s for s in SOURCES if s in sources), cuda_retaggable=True,
                        container="legacy" if legacy else "torch_zip")


def save(payload: Any, path: Path, legacy: bool) -> None:
    """``torch.save`` in the zip container, or the pre-1.6 legacy stream when ``legacy``."""
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)


def load(source: Source, mode: str, map_location: Any, mmap: bool = False) -> Any:
    """``torch.load`` in one of the load modes, from a path or a BytesIO, mapped when ``mmap``.

    ``unsafe`` (``weights_only=False``) executes arbitrary pickle code. The harness only uses it
    on files it wrote itself, after the consumer has checked the file's hash against the
    manifest (see :func:`harness.manifest.verify_artifact`); never on a user's file.
    """
    kwargs = compat.torch_load_kwargs(WEIGHTS_ONLY_FOR_MODE[mode], map_location)
    if kwargs.get("weights_only", compat.default_weights_only()) is False:
        kwargs["pickle_module"] = _cases.legacy_pickle  # artifacts written before cases/ became harness_cases
    if mmap:
        kwargs["mmap"] = True
    return torch.load(source, **kwargs)
