"""``ckpt-harness upgrade``: config validation, comparison, the report, bad input, and a real 2.5.1 → 2.13.0 run.

The real run uses tests/userproject (its own package, AdamW + cosine, numpy RNG state, a Namespace, a Path,
a DataParallel prefix, a v2 model with a changed head and an added layer): its checkpoints are written by
torch 2.5.1, and every fix the report prints for 2.13.0 is run again here in 2.13.0 and must load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.errors import HarnessError
from harness.upgrade import config, report
from harness.upgrade import run as runner
from tests._releases import need
from tests.conftest import run_cli

PROJECT = Path(__file__).resolve().parent / "userproject"


def project_copy(tmp_path: Path, table: str = "") -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    (root / "checkpoints").mkdir()
    if table:
        (root / "ckpt-harness.toml").write_text(table)
    return root


SMALL = """
checkpoints = ["checkpoints/*.pt"]
[[models]]
name = "cnn"
factory = "{factory}"
checkpoint = "checkpoints/cnn_state.pt"
key = "{key}"
batch = "shopnet.data:image_batch"
"""


def small_project(tmp_path: Path, factory: str = "shopnet.models:small_resnet", key: str = "") -> Path:
    root = project_copy(tmp_path, SMALL.format(factory=factory, key=key))
    sys.path.insert(0, str(root))
    try:
        from shopnet import models
    finally:
        sys.path.remove(str(root))
    torch.save(models.small_resnet().state_dict(), root / "checkpoints" / "cnn_state.pt")
    for name in list(sys.modules):
        if name.startswith("shopnet"):
            del sys.modules[name]
    return root


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit, words", [
    ('factory = "shopnet.models"', "factory must be 'module:function'"),
    ('checkpoint = "checkpoints/nope.pt"', "is not one of the files"),
    ('colour = "red"', "unknown key(s) colour"),
])
def test_config_problems_name_the_key(tmp_path: Path, edit: str, words: str) -> None:
    root = small_project(tmp_path)
    text = (root / "ckpt-harness.toml").read_text()
    key = edit.split(" = ")[0]
    lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
    lines.insert(lines.index('name = "cnn"') + 1, edit)
    (root / "ckpt-harness.toml").write_text("\n".join(lines))
    with pytest.raises(HarnessError, match=words.replace("(", r"\(").replace(")", r"\)")):
        config.load(root)


def test_config_without_checkpoints_or_table(tmp_path: Path) -> None:
    root = project_copy(tmp_path, 'checkpoints = ["nothing/*.pt"]\n')
    with pytest.raises(HarnessError, match="match no file"):
        config.load(root)
    (root / "ckpt-harness.toml").unlink()
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(HarnessError, match="no \\[tool.ckpt-harness\\]"):
        config.load(root)


def test_the_user_projects_config_parses() -> None:
    root = PROJECT
    (root / "checkpoints").mkdir(exist_ok=True)
    made = [root / "checkpoints" / f"{n}.pt" for n in ("cnn_dp", "encoder_state", "train_cnn", "encoder_whole")]
    created = [p for p in made if not p.exists()]
    for path in created:
        path.write_bytes(b"")
    try:
        project = config.load(root)
    finally:
        for path in created:
            path.unlink()
    assert [m["name"] for m in project.models] == ["cnn", "encoder"]
    assert project.trainings[0]["optimizer"] == "shopnet.train:make_optimizer" and project.resume_tolerance == 0.0
    assert (root / "checkpoints" / "encoder_whole.pt").resolve() in project.trusted


# -- comparing and reporting ---------------------------------------------------------------------


def stored(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "t") -> dict[str, runner.Stored]:
    """``tensors`` written by the worker's own writer and read back the way the caller reads them."""
    from harness.upgrade import worker

    path = tmp_path / f"{name}-{len(list(tmp_path.glob('*.npz')))}.npz"
    worker.save_tensors(tensors, path)
    found = runner._tensors(path)
    assert found is not None
    return found


def test_compare_finds_one_changed_bit(tmp_path: Path) -> None:
    a = {"w": torch.ones(3), "b": torch.zeros(2), "h": torch.ones(2, dtype=torch.bfloat16), "s": torch.tensor(3)}
    b = {**a, "b": torch.tensor([0.0, 1e-7])}
    assert runner.compare_tensors(stored(tmp_path, a), stored(tmp_path, dict(a)))["bitexact"]
    found = runner.compare_tensors(stored(tmp_path, a), stored(tmp_path, b))
    assert not found["bitexact"] and found["max_abs_diff"]["b"] == pytest.approx(1e-7)
    assert found["max_abs_diff"]["w"] == 0.0
    signed = runner.compare_tensors(stored(tmp_path, {"z": torch.zeros(1)}), stored(tmp_path, {"z": -torch.zeros(1)}))
    assert not signed["bitexact"]  # -0.0 == 0.0 in value, not in bits
    half = {**a, "h": torch.tensor([1.0, 1.0078125], dtype=torch.bfloat16)}
    assert runner.compare_tensors(stored(tmp_path, a), stored(tmp_path, half))["max_abs_diff"]["h"] == 0.0078125
    reshaped = runner.compare_tensors(stored(tmp_path, a), stored(tmp_path, {**a, "w": torch.ones(1, 3)}))
    assert reshaped["max_abs_diff"]["w"] == float("inf") and not reshaped["bitexact"]


def _training_files(tmp_path: Path, shift: float, rng_shift: float) -> tuple[runner.Side, runner.Side]:
    from harness.upgrade import worker

    sides = []
    for n, release in enumerate(("A", "B")):
        out = tmp_path / release
        out.mkdir(parents=True)
        worker.save_tensors({"w": torch.ones(2) + n * shift, "h": torch.zeros(1)}, out / "training-t-params.npz")
        worker.save_tensors({"dropout mask": torch.ones(4) * (1 + n * rng_shift)}, out / "training-t-rng.npz")
        sides.append(runner.Side(release, Path(sys.executable), out=out,
                                 answers={"trainings": {"t": {"groups": {"w": 0, "h": 1}}}}))
    return sides[0], sides[1]


def test_resume_bitexact_tolerance_and_rng_finding(tmp_path: Path) -> None:
    a, b = _training_files(tmp_path / "same", 0.0, 0.0)
    same = runner.resume("t", a, b, 0.0)
    assert same["bitexact"] and same["within_tolerance"] and same["rng_same"]
    a, b = _training_files(tmp_path / "moved", 1e-3, 1.0)
    moved = runner.resume("t", a, b, 0.0)
    assert not moved["bitexact"] and not moved["within_tolerance"] and not moved["rng_same"]
    assert moved["max_abs_diff_per_group"] == {"group 0": pytest.approx(1e-3, rel=1e-3), "group 1": 0.0}
    assert runner.resume("t", a, b, 1e-2)["within_tolerance"]


def test_report_renders_code_and_escapes_html() -> None:
    data = {"from": "2.5.1", "to": "2.13.0", "torch": {"2.5.1": "2.5.1", "2.13.0": "2.13.0"}, "ok": False,
            "project": "/p", "files": [{"path": "a<b>.pt", "container": "zip", "structure": "state_dict",
                                        "trusted": False, "ok": True, "answers": {
                "2.5.1": {"headline": "loads", "fixes": [], "error": "", "known_breaks": []},
                "2.13.0": {"headline": "loads after a fix (verified)", "error": "x", "known_breaks": ["k"],
                           "fixes": ["allowlist (verified):\nimport torch\nwith torch.serialization.safe_globals([a]):"
                                     "\n    checkpoint = torch.load('a<b>.pt')"]}}}],
            "models": [], "trainings": []}
    text = report.markdown(data)
    assert "not ready" in text and "```python\nimport torch" in text
    page = report.to_html(text, "t")
    assert "a&lt;b&gt;.pt" in page and "<pre><code>" in page and "safe_globals([a])" in page


# -- the CLI ------------------------------------------------------------------------------------


def upgrade(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_cli("upgrade", "--project", str(root), "--out", str(root / "report"), *args, timeout=timeout)


def test_unknown_release_is_one_line(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    for releases in (("2.5.1", "9.9.9"), ("9.9.9", "2.5.1")):  # checked before any environment is looked up or built
        done = upgrade(root, "--from", releases[0], "--to", releases[1], "--python", f"2.5.1={sys.executable}")
        assert done.returncode == 2 and "unknown torch release '9.9.9'" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


SAME = ["--python", f"2.5.1={sys.executable}", "--python", f"2.13.0={sys.executable}"]


@pytest.mark.slow
@pytest.mark.parametrize("factory, key, words", [
    ("shopnet.models:nope", "", "shopnet.models has no attribute 'nope'"),
    ("shopnet.broken:raises", "", "raised RuntimeError: the dataset folder is not mounted"),
    ("shopnet.models:small_resnet", "model", "has no key 'model'"),
])
def test_bad_project_input_is_one_line_exit_2(tmp_path: Path, factory: str, key: str, words: str) -> None:
    root = small_project(tmp_path, factory, key)
    done = upgrade(root, "--from", "2.5.1", "--to", "2.13.0", *SAME)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def write_checkpoints(root: Path, python: Path) -> None:
    done = subprocess.run([str(python), "-m", "shopnet.train", "checkpoints"], cwd=root, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def run_fixes_in(python: Path, root: Path, snippets: list[dict[str, Any]]) -> list[str]:
    """Run each printed fix in ``python`` (a fresh process, each in its own scope); return the failures."""
    script = """
import json, sys, torch, importlib
sys.path.insert(0, '.')
failures = []
for item in json.load(open(sys.argv[1])):
    scope = {"torch": torch}
    try:
        if item.get("factory"):
            module, _, name = item["factory"].partition(":")
            scope["model"] = getattr(importlib.import_module(module), name)()
            scope["state_dict"] = torch.load(item["file"], weights_only=True)
        exec(item["code"], scope)
        assert "checkpoint" in scope or "result" in scope
    except Exception as exc:
        failures.append(f"{item['what']}: {type(exc).__name__}: {exc}")
print(json.dumps(failures))
"""
    listing = root / "fixes.json"
    listing.write_text(json.dumps(snippets))
    done = subprocess.run([str(python), "-c", script, str(listing)], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_upgrade_2_5_1_to_2_13_0_on_the_user_project(tmp_path: Path) -> None:
    pythons = need("2.5.1", "2.13.0")
    root = project_copy(tmp_path)
    write_checkpoints(root, pythons["2.5.1"])
    started = time.perf_counter()
    done = upgrade(root, "--from", "2.5.1", "--to", "2.13.0", "--json")
    seconds = time.perf_counter() - started
    assert done.returncode in (0, 1), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"upgrade over {len(result['files'])} files, {len(result['models'])} models, "
          f"{len(result['trainings'])} training setup: {seconds:.1f} s (workers {result['seconds']})")
    files = {f["path"]: f["answers"] for f in result["files"]}
    assert len(files) == 6
    assert files["checkpoints/train_cnn.pt"]["2.13.0"]["headline"] == "loads after a fix (verified)"
    assert files["checkpoints/cnn_state.pt"]["2.13.0"]["headline"] == "loads"
    assert files["checkpoints/encoder_whole.pt"]["2.13.0"]["headline"].startswith("loads only with weights_only=False")
    assert "Unsupported global: GLOBAL" in files["checkpoints/train_cnn.pt"]["2.13.0"]["error"]
    # every fix printed for 2.13.0, run again here in 2.13.0: each must load
    snippets = [{"what": path, "code": answers["2.13.0"]["code"]} for path, answers in files.items()
                if answers["2.13.0"].get("code")]
    for model in result["models"]:
        partial = model["answers"]["2.13.0"]["partial"]
        snippets.append({"what": model["name"], "code": partial["code"], "factory": model["spec"]["new_factory"],
                         "file": model["spec"]["checkpoint"]})
        assert partial["ran"] and partial["values_equal"] and partial["mismatched"], partial
    assert len(snippets) >= 3
    assert run_fixes_in(pythons["2.13.0"], root, snippets) == []
    cnn = next(m for m in result["models"] if m["name"] == "cnn")["answers"]["2.13.0"]
    assert cnn["old_code"]["needs_fix"] and "module." in cnn["old_code"]["code"]  # the DataParallel prefix
    assert cnn["partial"]["mismatched"]["head.weight"] == [[10, 8], [12, 8]]
    assert any(k.startswith("blocks.2.") for k in cnn["partial"]["missing"])
    resumed = result["trainings"][0]["resume"]
    assert set(resumed) >= {"bitexact", "max_abs_diff_per_group", "rng_streams"}
    assert result["ok"] == (done.returncode == 0)
    assert (root / "report" / "upgrade.md").exists() and (root / "report" / "upgrade.html").exists()


# -- the worker's isolation -----------------------------------------------------------------------


def test_import_roots_go_after_the_standard_library_and_before_site_packages() -> None:
    from harness.upgrade import worker

    stdlib = sysconfig.get_paths()["stdlib"]
    path = [f"{stdlib}.zip".replace("/python3.", "/python3"), stdlib, f"{stdlib}/lib-dynload",
            "/venv/lib/python3.11/site-packages"]
    assert worker.import_roots(path, ["/project"]) == [*path[:3], "/project", path[3]]
    assert worker.import_roots(path, [path[1]]) == path  # never twice
    assert worker.import_roots([], ["/project"]) == ["/project"]


PLANTED_MODULES = ("sitecustomize", "usercustomize", "inspect", "glob", "pickletools", "tarfile")


def hostile_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose folder holds an untrusted and a trusted hostile checkpoint and planted modules."""
    markers = tmp_path / "markers"
    markers.mkdir()
    root = project_copy(tmp_path, 'checkpoints = ["checkpoints/*.pt"]\ntrusted = ["checkpoints/trusted.pt"]\n'
                                  'imports = ["shopnet.models"]\n')
    for name in ("hostile", "trusted"):
        torch.save({"w": torch.ones(2), "payload": Planted(markers / f"{name}-unpickled")},
                   root / "checkpoints" / f"{name}.pt")
    for module in PLANTED_MODULES:
        (root / f"{module}.py").write_text(f"open({str(markers / module)!r}, 'w').write('imported')\n")
    return root, markers


class Planted:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.slow
@pytest.mark.parametrize("release", ["this-python", "2.5.1"])
def test_the_worker_never_unpickles_an_untrusted_file_nor_imports_from_the_projects_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    """2.5.1: a release whose default torch.load is a full unpickle."""
    from harness.inspect import inspect_file

    python = Path(sys.executable) if release == "this-python" else need(release)[release]
    root, markers = hostile_project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PYTHONPATH", str(root))  # -I and the stripped environment must ignore it
    project = config.load(root)
    inspections = [inspect_file(p) for p in project.checkpoints]
    side = runner.run(project, inspections, [runner.Side("A", python)], tmp_path / "work")[0]
    files = {Path(p).name: a for p, a in side.answers["files"].items()}
    untrusted = files["hostile.pt"]["result"]["loads"]
    assert untrusted["weights_only"]["status"] == "fail" and untrusted["unsafe"]["status"] == "skip"
    assert untrusted["default"]["status"] in ("fail", "skip")
    assert not (markers / "hostile-unpickled").exists(), "an untrusted file was fully unpickled"
    # the planted damage is real: the trusted copy of the same file, unpickled in full, runs its payload
    assert files["trusted.pt"]["result"]["loads"]["unsafe"]["status"] == "pass"
    assert (markers / "trusted-unpickled").exists()
    assert side.answers["imports"]["shopnet.models"]["status"] == "ok"  # the import root the config names works
    assert sorted(p.name for p in markers.iterdir() if p.name in PLANTED_MODULES) == []
    assert Path(side.answers["environment"]["executable"]).parent == python.parent


@pytest.mark.slow
def test_the_caller_never_imports_torch(tmp_path: Path) -> None:
    """Inspection, comparison and the report run without torch (the workers import it, once each)."""
    from harness.upgrade import worker

    worker.save_tensors({"w": torch.ones(2)}, tmp_path / "t.npz")
    torch.save({"w": torch.ones(2)}, tmp_path / "f.pt")
    script = f"""
import sys
from pathlib import Path
from harness.commands import upgrade  # noqa: F401
from harness.inspect.isolated import inspect_isolated
from harness.upgrade import answers, report, run
found = inspect_isolated(Path({str(tmp_path / 'f.pt')!r}), allowlist=None)[0]
assert found.container == "zip", found
from harness.checkfile import request_item
assert request_item(found)["pickled"]
stored = run._tensors(Path({str(tmp_path / 't.npz')!r}))
assert run.compare_tensors(stored, stored)["bitexact"]
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
