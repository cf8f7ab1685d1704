"""``ckpt-harness check`` on files the harness did not write: made by hand here, and the frozen corpus.

Inspection is checked against what the test saved (structure, tensors, bytes, devices, prefixes)
and, for zip pickles, against torch's own ``get_unsafe_globals_in_checkpoint``. A file whose
pickle would run code proves that neither inspection nor a check without --allow-unsafe runs it.
``--torch 2.13.0`` loads in the dev environment's release; 2.5.1 runs only where its shared
environment exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.inspect import inspect_file
from tests.conftest import REPO, run_cli

CORPUS = REPO / "cases" / "corpus"
DEV_RELEASE = "2.13.0"
HAS_251 = (REPO / ".nox" / "releases" / "torch-2.5.1" / "bin" / "python").exists()

USER_MODELS = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))
"""

EVIL = """
import os, pickle, sys
marker = sys.argv[1]
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {marker}",))
import torch
torch.save({"weight": torch.zeros(2), "payload": Evil()}, sys.argv[2])
"""


def _cuda_copy(source: Path, target: Path, location: str = "cuda:1") -> None:
    """A copy of a zip checkpoint whose storages claim ``location`` (the pickle's 'cpu' strings rewritten)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith("/data.pkl"):
                encoded = location.encode()
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X" + len(encoded).to_bytes(4, "little") + encoded)
            new.writestr(info.filename, data)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("user-checkpoints")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    made = {name: folder / name for name in ("sd.pt", "legacy.pt", "dp.pt", "cuda.pt", "zip_cut.pt",
                                             "legacy_cut.pt", "notes.txt", "model.safetensors", "script.ts.pt",
                                             "compiled.pt")}
    torch.save(model.state_dict(), made["sd.pt"])
    torch.save(model.state_dict(), made["legacy.pt"], _use_new_zipfile_serialization=False)
    torch.save(nn.DataParallel(model).state_dict(), made["dp.pt"])
    torch.save({"_orig_mod." + k: v for k, v in model.state_dict().items()}, made["compiled.pt"])
    _cuda_copy(made["sd.pt"], made["cuda.pt"])
    whole = made["sd.pt"].read_bytes()
    made["zip_cut.pt"].write_bytes(whole[: len(whole) // 2])
    legacy = made["legacy.pt"].read_bytes()
    made["legacy_cut.pt"].write_bytes(legacy[:-20])
    made["notes.txt"].write_text("epoch 3: loss 0.12\n")
    import safetensors.torch

    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(made["model.safetensors"]))
    torch.jit.save(torch.jit.script(model), str(made["script.ts.pt"]))
    (folder / "usermodels.py").write_text(USER_MODELS)
    saved = subprocess.run([sys.executable, "-c", "import torch, usermodels; torch.save(usermodels.Net(), 'whole.pt')"],
                           cwd=folder, capture_output=True, text=True)
    assert saved.returncode == 0, saved.stderr
    made["whole.pt"] = folder / "whole.pt"
    made["evil.pt"], made["marker"] = folder / "evil.pt", folder / "code-ran"
    evil = subprocess.run([sys.executable, "-c", EVIL, str(made["marker"]), str(made["evil.pt"])],
                          capture_output=True, text=True)
    assert evil.returncode == 0 and not made["marker"].exists(), evil.stderr
    return made


def check(*args: str, cwd: Path | None = None) -> tuple[int, list[dict]]:
    env = {"PYTHONPATH": str(cwd)} if cwd else None
    done = run_cli("check", "--json", *args, extra_env=env)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_inspection_of_hand_made_files(files: dict[str, Path]) -> None:
    sd = inspect_file(files["sd.pt"])
    assert (sd.container, sd.structure, sd.tensors, sd.devices) == ("zip", "state_dict", 4, ["cpu"])
    assert sd.bytes == (4 * 3 + 3 + 3 * 2 + 2) * 4 and sd.dtypes == {"float32": 4}
    assert sd.records["version"] == "3" and sd.records["byteorder"] == "little"
    assert sd.unsafe_globals == [] and sd.prefixes == {}
    legacy = inspect_file(files["legacy.pt"])
    assert (legacy.container, legacy.structure, legacy.bytes) == ("legacy", "state_dict", sd.bytes)
    assert inspect_file(files["dp.pt"]).prefixes == {"module.": 4}
    assert inspect_file(files["compiled.pt"]).prefixes == {"_orig_mod.": 4}
    assert inspect_file(files["cuda.pt"]).devices == ["cuda:1"]
    for cut in ("zip_cut.pt", "legacy_cut.pt"):
        assert inspect_file(files[cut]).container == "truncated", cut
    assert inspect_file(files["notes.txt"]).container == "not a checkpoint"
    st = inspect_file(files["model.safetensors"])
    assert (st.container, st.tensors, st.bytes, st.structure) == ("safetensors", 4, sd.bytes, "state_dict")
    ts = inspect_file(files["script.ts.pt"])
    assert (ts.container, ts.structure) == ("torchscript", "TorchScript module") and ts.tensors == 4
    whole = inspect_file(files["whole.pt"])
    assert whole.structure == "whole module" and whole.module_class == "usermodels.Net"
    assert "usermodels.Net" in whole.unsafe_globals and "torch.nn.modules.conv.Conv2d" in whole.unsafe_globals
    evil = inspect_file(files["evil.pt"])
    assert "posix.system" in evil.unsafe_globals or "os.system" in evil.unsafe_globals
    assert not files["marker"].exists(), "inspecting a file must not run its pickle"


CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.parent.name != "outputs"
                      and p.name != "manifest.json")
STRUCTURE = {"state_dict": "state_dict", "training": "training checkpoint", "whole_model": "whole module",
             "multi_model": "multi-model dict", "torchscript": "TorchScript module", "safetensors": "state_dict",
             "export_pt2": "exported program"}


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES])
def test_inspection_of_the_frozen_corpus(path: Path) -> None:
    found = inspect_file(path)
    kind = next(k for k in STRUCTURE if path.name.startswith(k))
    assert found.structure == STRUCTURE[kind], found
    assert found.loadable and found.tensors > 0 and found.bytes > 0 and found.devices == ["cpu"]
    if found.container == "zip":
        assert found.unsafe_globals == sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def test_without_torch_only_inspects(files: dict[str, Path]) -> None:
    status, reports = check(str(files["sd.pt"]), str(files["dp.pt"]))
    assert status == 0 and [r["verdicts"] for r in reports] == [{}, {}]
    for field in ("path", "container", "devices", "tensors", "bytes", "structure", "prefixes", "unsafe_globals"):
        assert field in reports[0]
    status, _ = check(str(files["sd.pt"]), str(files["zip_cut.pt"]))
    assert status == 1, "a truncated file is a finding"


def test_torch_release_verdicts_and_fixes(files: dict[str, Path]) -> None:
    names = ["sd.pt", "legacy.pt", "dp.pt", "cuda.pt", "zip_cut.pt", "notes.txt", "model.safetensors",
             "script.ts.pt", "whole.pt", "evil.pt"]
    status, reports = check(*(str(files[n]) for n in names), "--torch", DEV_RELEASE)
    assert status == 1
    verdicts = {Path(r["path"]).name: r["verdicts"][DEV_RELEASE] for r in reports}
    for ok in ("sd.pt", "legacy.pt", "dp.pt", "cuda.pt", "model.safetensors", "script.ts.pt"):
        assert verdicts[ok]["status"] == "ok", (ok, verdicts[ok])
    assert verdicts["sd.pt"]["loads"]["weights_only"]["status"] == "pass"
    assert verdicts["sd.pt"]["loads"]["unsafe"]["status"] == "skip"
    assert verdicts["cuda.pt"]["map_location"] == "cpu"
    assert any("map_location='cpu'" in f for f in verdicts["cuda.pt"]["fixes"])
    assert any("consume_prefix_in_state_dict_if_present(state_dict, 'module.')" in f
               for f in verdicts["dp.pt"]["fixes"])
    assert verdicts["zip_cut.pt"]["status"] == "fail" and any("truncated" in f for f in verdicts["zip_cut.pt"]["fixes"])
    assert verdicts["notes.txt"]["status"] == "fail"
    whole = verdicts["whole.pt"]
    assert whole["status"] == "fail" and "Weights only load failed" in whole["loads"]["default"]["message"]
    # usermodels.Net and torch.nn classes are not plain data: no allowlist is printed, and the verdict says why
    assert not any("safe_globals(" in f for f in whole["fixes"]), whole["fixes"]
    assert any("is not on the harness's list" in f for f in whole["fixes"]), whole["fixes"]
    assert whole["headline"].startswith("not tried"), whole["headline"]
    evil = verdicts["evil.pt"]
    assert evil["status"] == "fail" and any(f.startswith("do not load this file") for f in evil["fixes"])
    assert evil["headline"].startswith("dangerous: names posix.system"), evil["headline"]
    assert not any("safe_globals" in f or "--allow-unsafe" in f for f in evil["fixes"]), evil["fixes"]
    assert not files["marker"].exists(), "without --allow-unsafe no file's code may run"


def test_dangerous_file_is_never_fully_unpickled(files: dict[str, Path]) -> None:
    status, reports = check(str(files["evil.pt"]), str(files["sd.pt"]))
    assert status == 1 and reports[0]["dangerous_globals"] == ["posix.system"] and not reports[1]["dangerous_globals"]
    status, reports = check(str(files["evil.pt"]), "--torch", DEV_RELEASE, "--allow-unsafe")
    loads = reports[0]["verdicts"][DEV_RELEASE]["loads"]
    assert status == 1 and loads["unsafe"]["status"] == "skip" and loads["weights_only"]["status"] == "fail"
    assert not files["marker"].exists(), "--allow-unsafe must not fully unpickle a file naming a dangerous global"


def test_whole_model_loads_with_import_and_allow_unsafe(files: dict[str, Path]) -> None:
    folder = files["whole.pt"].parent
    _, without = check(str(files["whole.pt"]), "--torch", DEV_RELEASE, "--allow-unsafe")
    _, with_import = check(str(files["whole.pt"]), "--torch", DEV_RELEASE, "--allow-unsafe", "--import", "usermodels",
                           "--path", str(folder))
    # without --path the worker has no folder of the user's on sys.path: the class cannot be found
    assert without[0]["verdicts"][DEV_RELEASE]["loads"]["unsafe"]["status"] == "fail"
    assert any("--import" in f for f in without[0]["verdicts"][DEV_RELEASE]["fixes"])
    assert with_import[0]["verdicts"][DEV_RELEASE]["loads"]["unsafe"]["status"] == "pass"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_251, reason="needs .nox/releases/torch-2.5.1 (built by the matrix)")
def test_cross_release_2_5_1(files: dict[str, Path]) -> None:
    export = next(CORPUS.glob("2.6.0/*/simple/export_pt2.pt2"))
    status, reports = check(str(files["sd.pt"]), str(export), "--torch", "2.5.1", "--torch", DEV_RELEASE)
    assert status == 1
    sd, program = (r["verdicts"] for r in reports)
    assert sd["2.5.1"]["status"] == "ok" and sd["2.5.1"]["torch"].startswith("2.5.1")
    assert sd["2.5.1"]["loads"]["default"]["status"] == "skip"  # 2.5.1's default is a full unpickle
    assert program[DEV_RELEASE]["status"] == "ok" and program["2.5.1"]["status"] == "fail"
    assert any("newer torch" in f for f in program["2.5.1"]["fixes"])


def test_bad_input_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    for args, message in ((["nope.pt"], "no such file"), ([str(tmp_path)], "is a folder"),
                          ([str(files["sd.pt"]), "--torch", "0.0.1"], "unknown torch release")):
        done = run_cli("check", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
