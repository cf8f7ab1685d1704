"""Big artifacts are mapped by their main loads (``torch.load(mmap=True)``), and both sources stay checked.

The threshold is lowered to 0 here so that the small in-process artifacts count as big.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import compat
from harness import env as envmod
from harness.consume import collect, consume_artifact, main_sources
from harness.formats import FORMATS

consume_mod = importlib.import_module("harness.consume")  # the package exports the function of that name

needs_mmap = pytest.mark.skipif(not compat.has_mmap(), reason="this torch.load has no mmap parameter")


def _artifact(root: Path, fmt: str, case: str = "tied", trusted: bool = True) -> Any:
    (found,) = [a for a in collect([root]) if a.entry["format"] == fmt and a.entry["case"] == case]
    return dataclasses.replace(found, trusted=trusted)  # produced here, so sealed: untrusted only when told


class _SeenLoads:
    """Wraps torch.load: which calls mapped the file; ``damage`` zeroes what a mapped load returns."""

    def __init__(self, damage: bool = False) -> None:
        self.calls: list[bool] = []
        self.damage = damage
        self.real = torch.load

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(bool(kwargs.get("mmap")))
        loaded = self.real(*args, **kwargs)
        if self.damage and kwargs.get("mmap") and isinstance(loaded, dict):
            for value in loaded.values():
                if isinstance(value, torch.Tensor) and value.numel():
                    value.zero_() if not value.is_floating_point() else value.add_(1.0)
        return loaded


def _consume(artifact: Any, tmp_path: Path) -> dict[tuple[str, str], Any]:
    return {(r.check, r.load_mode): r for r in consume_artifact(artifact, envmod.describe("cpu"), tmp_path)}


@needs_mmap
def test_a_big_artifact_is_mapped_by_every_mode_but_the_last(small_artifacts: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = _artifact(small_artifacts, "state_dict_zip")
    plain = _consume(artifact, tmp_path)
    monkeypatch.setattr(consume_mod, "MMAP_MIN_BYTES", 0)
    seen = _SeenLoads()
    monkeypatch.setattr(torch, "load", seen)
    mapped = _consume(artifact, tmp_path)
    assert {k: r.status for k, r in mapped.items()} == {k: r.status for k, r in plain.items()}
    assert all(r.status in ("pass", "skip") for r in mapped.values()), [r for r in mapped.values()]
    assert "mmap=True" in mapped[("load", "default")].detail and "mmap=True" in mapped[("load", "weights_only")].detail
    assert mapped[("load", "unsafe")].detail == ""  # the last mode reads the path
    assert True in seen.calls and False in seen.calls


@needs_mmap
def test_a_mapped_load_that_returns_other_bytes_fails_its_tensors_check(small_artifacts: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consume_mod, "MMAP_MIN_BYTES", 0)
    monkeypatch.setattr(torch, "load", _SeenLoads(damage=True))
    mapped = _consume(_artifact(small_artifacts, "state_dict_zip"), tmp_path)
    assert mapped[("tensors", "default")].status == "fail"
    assert mapped[("tensors", "weights_only")].status == "fail"
    assert mapped[("tensors", "unsafe")].status == "pass"  # read from the path: undamaged


def test_sources_map_only_big_files_of_mappable_formats_and_keep_one_path_load() -> None:
    zipped, legacy = FORMATS.get("state_dict_zip"), FORMATS.get("state_dict_legacy")
    big, small = {"file_bytes": consume_mod.MMAP_MIN_BYTES}, {"file_bytes": consume_mod.MMAP_MIN_BYTES - 1}
    modes = ["default", "weights_only", "unsafe"]
    expected = {"default": "mmap", "weights_only": "mmap", "unsafe": "path"} if compat.has_mmap() else \
        dict.fromkeys(modes, "path")
    assert main_sources(zipped, big, modes) == expected
    assert main_sources(zipped, small, modes) == dict.fromkeys(modes, "path")
    assert main_sources(legacy, big, modes) == dict.fromkeys(modes, "path")  # the legacy stream cannot be mapped
    assert main_sources(zipped, big, ["weights_only"]) == {"weights_only": "path"}  # one mode: the path
    assert main_sources(FORMATS.get("safetensors"), big, ["default"]) == {"default": "path"}


@needs_mmap
def test_an_untrusted_big_artifact_keeps_its_last_loading_mode_on_the_path(small_artifacts: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """unsafe is refused for an untrusted file: the last mode that does load reads the path instead."""
    monkeypatch.setattr(consume_mod, "MMAP_MIN_BYTES", 0)
    recs = _consume(_artifact(small_artifacts, "state_dict_zip", trusted=False), tmp_path)
    loaded = [mode for mode in ("default", "weights_only", "unsafe") if recs[("load", mode)].status == "pass"]
    assert recs[("load", "unsafe")].status == "skip" and loaded[-1] == "weights_only"
    assert recs[("load", "weights_only")].detail == ""
    assert all("mmap=True" in recs[("load", mode)].detail for mode in loaded[:-1])
