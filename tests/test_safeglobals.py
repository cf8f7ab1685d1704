"""Verified safe-globals fixes (harness.checkfile.safeglobals) and the verdict headlines built on them.

Every allowlist printed was run: the search execs the snippet it returns. The planted cases show the
search stopping at a name off the vetted list without importing it, and a verdict printing no
allowlist when none loaded the file.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch

from harness.checkfile import safeglobals
from harness.checkfile.verdicts import FAILS, FIXED, LOADS, UNSAFE_ONLY, judge
from harness.inspect import inspect_file


def training_checkpoint(path: Path) -> Path:
    model = torch.nn.Linear(2, 2)
    torch.save({"model": model.state_dict(), "loss": numpy.float64(0.5), "numpy_rng": numpy.random.get_state(),
                "args": argparse.Namespace(lr=0.1), "out": pathlib.Path("/tmp/x"),
                "counts": collections.defaultdict(list)}, path)
    return path


@pytest.mark.parametrize("name, vetted", [
    ("numpy.dtypes.Float64DType", True), ("numpy.dtypes.UInt32DType", True), ("argparse.Namespace", True),
    ("numpy._core.multiarray._reconstruct", True), ("builtins.list", True), ("pathlib.PosixPath", True),
    ("builtins.eval", False), ("os.system", False), ("posix.system", False), ("numpy.dtypes.__getattr__", False),
    ("numpy.load", False), ("torch.load", False), ("torch.nn.modules.linear.Linear", False),
    ("subprocess.Popen", False), ("numpy.dtypes.x", False)])
def test_only_vetted_names_are_harmless(name: str, vetted: bool) -> None:
    assert safeglobals.harmless(name) is vetted
    if not vetted:
        assert safeglobals.resolve(name) is None


def test_reads_the_refused_name_from_torchs_error() -> None:
    assert safeglobals.next_refused("WeightsUnpickler error: Unsupported global: GLOBAL numpy.dtype was not") == \
        "numpy.dtype"
    assert safeglobals.next_refused("Can only build Tensor, Parameter, OrderedDict or types allowlisted via "
                                    "`add_safe_globals`, but got <class 'numpy.dtypes.Float64DType'>") == \
        "numpy.dtypes.Float64DType"
    assert safeglobals.next_refused("Unsupported global: GLOBAL list was not an allowed") == "builtins.list"
    assert safeglobals.next_refused("some other error") is None


def test_grows_the_list_until_the_file_loads_and_the_code_loads_it(tmp_path: Path) -> None:
    path = training_checkpoint(tmp_path / "train.pt")
    found = safeglobals.verify(str(path), seed=torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert found["status"] == "loads", found
    # the two the old unverified fix lacked (issue 11): only a real load reveals them
    assert {"numpy.dtypes.Float64DType", "numpy.dtypes.UInt32DType", "argparse.Namespace"} <= set(found["names"])
    scope: dict[str, Any] = {}
    exec(found["code"], scope)  # the printed code, run here: it loads the file
    assert scope["checkpoint"]["args"].lr == 0.1


def test_without_a_seed_the_errors_alone_lead_there(tmp_path: Path) -> None:
    path = training_checkpoint(tmp_path / "train.pt")
    found = safeglobals.verify(str(path))
    assert found["status"] == "loads" and found["tries"] > 2, found


def test_add_safe_globals_snippet_for_releases_without_the_context_manager() -> None:
    code = safeglobals.snippet("f.pt", ["numpy.dtype", "builtins.list"], set(), "add_safe_globals", "cpu")
    assert "torch.serialization.add_safe_globals([numpy.dtype, list])" in code
    assert "map_location='cpu'" in code and "import builtins" not in code


def test_stops_at_a_name_off_the_list_without_importing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("planted_never_import_me")

    class Payload:
        pass

    Payload.__module__ = module.__name__
    Payload.__qualname__ = "Payload"
    module.Payload = Payload  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "planted.pt"
    torch.save({"w": torch.zeros(2), "x": numpy.float64(1.0), "p": Payload()}, path)
    monkeypatch.delitem(sys.modules, module.__name__)
    found = safeglobals.verify(str(path))
    assert found["status"] == "not-allowlistable" and found["code"] is None, found
    assert found["remaining"] == "planted_never_import_me.Payload"
    assert module.__name__ not in sys.modules
    seeded = safeglobals.verify(str(path), seed=["planted_never_import_me.Payload"])
    assert seeded["status"] == "not-allowlistable" and seeded["tries"] == 0


def _result(loads: dict[str, str], verified: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"torch": "2.13.0", "loads": {m: {"status": s, "message": f"{m} {s}", "warnings": []}
                                          for m, s in loads.items()},
            "map_location": None, "needs_globals": None, "verified_fix": verified}


def test_headlines_and_only_verified_fixes_are_printed(tmp_path: Path) -> None:
    inspection = inspect_file(training_checkpoint(tmp_path / "train.pt"))
    ok = judge(inspection, "2.13.0", _result({"default": "pass", "weights_only": "pass", "unsafe": "skip"}))
    assert ok.headline == LOADS
    loaded = {"status": "loads", "names": ["numpy.dtype"], "code": "import torch\n...", "remaining": None}
    fixed = judge(inspection, "2.13.0", _result({"default": "fail", "weights_only": "fail", "unsafe": "skip"}, loaded))
    assert fixed.headline == FIXED and any("verified" in f and "import torch" in f for f in fixed.fixes)
    assert not any("--allow-unsafe" in f for f in fixed.fixes)
    stuck = {"status": "not-allowlistable", "names": ["numpy.dtype"], "code": None, "remaining": "evil.X",
             "error": "Unsupported global: GLOBAL evil.X"}
    unsafe = judge(inspection, "2.13.0", _result({"default": "fail", "weights_only": "fail", "unsafe": "pass"}, stuck))
    assert unsafe.headline == UNSAFE_ONLY
    assert not any("safe_globals(" in f for f in unsafe.fixes), "an allowlist that did not load must not be printed"
    assert any("evil.X is not on" in f for f in unsafe.fixes)
    pre26 = judge(inspection, "2.5.1", _result({"default": "skip", "weights_only": "fail", "unsafe": "skip"}, stuck))
    assert pre26.headline.startswith("not tried (") and pre26.status == "fail"
    broken = judge(inspection, "2.13.0", _result({"default": "fail", "weights_only": "fail", "unsafe": "fail"}, stuck))
    assert broken.headline == FAILS
