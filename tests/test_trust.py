"""Files the harness did not write never run code (issue 10).

Every payload here is inert: a pickle whose reduce calls ``open(MARKER, "w")``, so running it only
creates an empty marker file in the test's temporary folder. Each test that proves "no code ran"
also runs the same payload where running it is expected (trusted, or unguarded), so that it can fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import compat, trust
from harness.errors import HarnessError
from harness.fingerprint import hash_file
from harness.manifest import MANIFEST_NAME, artifact_path, outputs_path, write_atomic

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Pickles as ``open(marker, "w")``: loading it fully creates ``marker`` (and nothing else)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def payload_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(2), "x": Payload(marker)}, buffer)
    return buffer.getvalue()


# -- the seal ------------------------------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "env"
    (folder / "case").mkdir(parents=True)
    (folder / MANIFEST_NAME).write_text("{}")
    (folder / "case" / "a.pt").write_bytes(b"weights")
    return folder


def test_the_key_is_made_private_outside_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "cfg" / "key"))
    folder = _folder(tmp_path)
    trust.seal(folder)
    key = tmp_path / "cfg" / "key"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    assert not any("key" == p.name for p in folder.rglob("*"))
    assert key.read_text().strip() not in (folder / trust.SEAL_NAME).read_text()


def test_a_seal_verifies_and_covers_only_unchanged_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    trust.seal(folder)
    found = trust.verify(folder)
    assert found is not None and found.covers(folder / "case" / "a.pt")
    (folder / "case" / "a.pt").write_bytes(b"hostile")
    assert not found.covers(folder / "case" / "a.pt")
    assert not found.covers(tmp_path / "elsewhere.pt")


def test_a_changed_manifest_or_seal_or_another_key_does_not_verify(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path)
    trust.seal(folder)
    assert trust.verify(folder) is not None
    (folder / MANIFEST_NAME).write_text('{"x": 1}')
    assert trust.verify(folder) is None  # manifest.json is covered
    trust.seal(folder)
    seal = json.loads((folder / trust.SEAL_NAME).read_text())
    seal["files"]["case/a.pt"] = "0" * 64  # an attacker re-hashing without the key
    (folder / trust.SEAL_NAME).write_text(json.dumps(seal))
    assert trust.verify(folder) is None
    trust.seal(folder)
    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "other-user" / "key"))
    trust.load_key(create=True)
    assert trust.verify(folder) is None  # sealed by someone else's key
    for bad in ("", "[]", '{"scheme": 5}', "{" * 5000):
        (folder / trust.SEAL_NAME).write_text(bad)
        assert trust.verify(folder) is None


def test_a_key_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    monkeypatch.setenv(trust.KEY_ENV, str(key))
    with pytest.raises(HarnessError, match="chmod 600"):
        trust.load_key()


def test_explicit_trust_is_the_flag_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(trust.TRUST_ENV, raising=False)
    assert not trust.explicit(False) and trust.explicit(True)
    monkeypatch.setenv(trust.TRUST_ENV, "1")
    assert trust.explicit(False)


@pytest.mark.parametrize("default", [True, False, None])
def test_which_loads_are_full_unpickles(monkeypatch: pytest.MonkeyPatch, default: Any) -> None:
    monkeypatch.setattr(compat, "default_weights_only", lambda: default)
    assert trust.full_unpickle(True, "unsafe")
    assert not trust.full_unpickle(True, "weights_only")
    assert trust.full_unpickle(True, "default") == (not default)
    assert not trust.full_unpickle(False, "default")  # TorchScript, export, safetensors: guarded instead


# -- the guard around untrusted loads -------------------------------------------------------------


def test_the_guard_refuses_weights_only_false_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "p.pt"
    path.write_bytes(payload_bytes(marker))
    monkeypatch.setattr(compat, "default_weights_only", lambda: False)  # a pre-2.6 default
    with compat.RefuseFullUnpickle():
        with pytest.raises(compat.FullUnpickleRefused):
            torch.load(path, weights_only=False)
        with pytest.raises(pickle.UnpicklingError):  # made weights_only: refuses builtins.open
            torch.load(path)
        with pytest.raises(compat.FullUnpickleRefused):
            torch.serialization.load(path, weights_only=False)
    assert not marker.exists()
    assert compat.has_weights_only()  # the signature probe still sees torch.load's own parameters
    torch.load(path, weights_only=False)  # control: outside the guard the payload runs
    assert marker.exists()


def test_the_guard_stops_torch_export_falling_back_to_a_full_unpickle(tmp_path: Path) -> None:
    serialize = pytest.importorskip("torch._export.serde.serialize")
    if not hasattr(serialize, "deserialize_torch_artifact"):
        pytest.skip("this release's torch.export has no deserialize_torch_artifact")
    marker = tmp_path / "ran"
    with compat.RefuseFullUnpickle(), pytest.raises(compat.FullUnpickleRefused):
        serialize.deserialize_torch_artifact(payload_bytes(marker))
    assert not marker.exists()
    # control: unguarded, it falls back (its warning then trips over its own format string under pytest)
    with contextlib.suppress(TypeError):
        serialize.deserialize_torch_artifact(payload_bytes(marker))
    assert marker.exists(), "torch.export no longer falls back to weights_only=False: the guard is moot here"


# -- artifact paths stay inside the folder ------------------------------------------------------


def _document(tmp_path: Path, file: Any, outputs: Any = "outputs/simple.pt") -> dict[str, Any]:
    root = tmp_path / "artifacts" / "env"
    (root / "simple").mkdir(parents=True, exist_ok=True)
    (root / "outputs").mkdir(exist_ok=True)
    (root / "simple" / "ok.pt").write_bytes(b"x")
    (root / "outputs" / "simple.pt").write_bytes(b"x")
    (tmp_path / "outside.pt").write_bytes(b"x")
    return {"_root": str(root), "cases": {"simple": {"outputs_file": outputs}}}


def _symlink_out(tmp_path: Path) -> str:
    link = tmp_path / "artifacts" / "env" / "simple" / "link.pt"
    link.symlink_to(tmp_path / "outside.pt")
    return "simple/link.pt"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "not-a-string", "missing"])
def test_artifact_paths_must_resolve_inside_the_folder(tmp_path: Path, kind: str) -> None:
    document = _document(tmp_path, None)
    file = {"dotdot": "../../outside.pt", "absolute": str(tmp_path / "outside.pt"), "not-a-string": 5,
            "missing": "simple/nope.pt"}.get(kind) or _symlink_out(tmp_path)
    with pytest.raises(HarnessError) as raised:
        artifact_path(document, {"file": file})
    assert "\n" not in str(raised.value)
    document["cases"]["simple"]["outputs_file"] = file
    with pytest.raises(HarnessError):
        outputs_path(document, "simple")


def test_paths_inside_the_folder_resolve(tmp_path: Path) -> None:
    document = _document(tmp_path, None)
    inner = tmp_path / "artifacts" / "env" / "simple" / "inner.pt"
    inner.symlink_to(tmp_path / "artifacts" / "env" / "simple" / "ok.pt")
    assert artifact_path(document, {"file": "simple/ok.pt"}).name == "ok.pt"
    assert artifact_path(document, {"file": "simple/inner.pt"}).name == "ok.pt"  # a link that stays inside
    assert outputs_path(document, "simple").name == "simple.pt"


# -- consume: a copied folder with a payload and a re-hashed manifest -----------------------------


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder this user's produce wrote (and sealed): one case, a state_dict and a whole-model pickle."""
    from harness.produce import produce

    return produce(tmp_path_factory.mktemp("sealed"), ["simple"], ["state_dict_zip", "whole_model_zip"])


def _hostile_copy(sealed: Path, tmp_path: Path, marker: Path) -> Path:
    """The sealed folder copied, one pickle swapped for the payload and the manifest re-hashed to match."""
    folder = tmp_path / "copy" / sealed.name
    shutil.copytree(sealed, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    entry = next(e for e in manifest["entries"] if e["format"] == "state_dict_zip")
    target = folder / entry["file"]
    target.write_bytes(payload_bytes(marker))
    entry["file_bytes"], entry["file_hash"] = target.stat().st_size, hash_file(target)
    write_atomic(folder / MANIFEST_NAME, manifest)
    return folder


def _consume(folder: Path, trust_all: bool = False) -> list[Any]:
    from harness.consume import consume
    from harness.records import RecordWriter

    with RecordWriter(None) as writer:
        return consume([folder.parent], writer, trust_all=trust_all)


@pytest.mark.slow
def test_what_this_users_produce_sealed_is_loaded_every_way(sealed: Path) -> None:
    records = _consume(sealed)
    loads = {(r.format, r.load_mode): r.status for r in records if r.check == "load"}
    assert loads[("state_dict_zip", "unsafe")] == "pass"
    assert loads[("whole_model_zip", "unsafe")] == "pass"
    assert not [r for r in records if r.problem]


@pytest.mark.slow
@pytest.mark.parametrize("default_weights_only", [True, False])
def test_a_copied_folder_with_a_rehashed_manifest_runs_no_code(sealed: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               default_weights_only: bool) -> None:
    monkeypatch.setattr(compat, "default_weights_only", lambda: default_weights_only)
    marker = tmp_path / "ran"
    folder = _hostile_copy(sealed, tmp_path, marker)
    records = _consume(folder)
    assert not marker.exists(), "an untrusted pickle was fully unpickled"
    skipped = {r.load_mode: r.detail for r in records if r.check == "load" and r.status == "skip"
               and r.format == "state_dict_zip"}
    assert "unsafe" in skipped and "--trust" in skipped["unsafe"]
    assert ("default" in skipped) == (not default_weights_only)
    # the manifest changed, so the seal covers nothing in the copy: the untouched pickle is not trusted either
    whole = {r.load_mode: r.status for r in records if r.check == "load" and r.format == "whole_model_zip"}
    assert whole["unsafe"] == "skip"
    _consume(folder, trust_all=True)  # control: the user's --trust lets the payload run
    assert marker.exists()


@pytest.mark.slow
def test_consume_refuses_a_manifest_pointing_out_of_its_folder(sealed: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    from tests.test_bad_input import assert_one_line_error

    marker = tmp_path / "ran"
    folder = tmp_path / "copy" / sealed.name
    shutil.copytree(sealed, folder)
    (tmp_path / "evil.pt").write_bytes(payload_bytes(marker))
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    entry = next(e for e in manifest["entries"] if e["format"] == "whole_model_zip")
    entry["file"] = "../../evil.pt"
    entry["file_bytes"], entry["file_hash"] = (tmp_path / "evil.pt").stat().st_size, hash_file(tmp_path / "evil.pt")
    write_atomic(folder / MANIFEST_NAME, manifest)
    result = run_cli("consume", str(folder.parent), "--results", str(tmp_path / "r.jsonl"), "--trust")
    assert_one_line_error(result, "outside the manifest's folder")
    assert not marker.exists()


# -- corrupt: never allows a global beyond torch's set and the vetted list ------------------------


class Reduce:
    """Pickles as ``fn(*args)``."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args)


def test_the_vetted_list_refuses_code_runners_and_never_imports() -> None:
    from harness.corrupt import vetted

    allowlist = compat.weights_only_allowlist()
    ok, refused = vetted.split(["torch._utils._rebuild_tensor_v2", "torch.nn.modules.linear.Linear",
                                "numpy._core.multiarray._reconstruct", "argparse.Namespace", "torch.nn.functional.relu",
                                "posix.system", "io.open", "runpy._run_code", "builtins.eval", "torch.hub.load",
                                "torch.nn.functional.torch", "torch.nn.modules.linear.math", "antigravity.fly",
                                "harness_cases.nosuchcase.Model", "cases.simple.SimpleModel",
                                "harness_cases.simple.SimpleModel"], allowlist)
    assert ok == ["argparse.Namespace", "harness_cases.simple.SimpleModel", "numpy._core.multiarray._reconstruct",
                  "torch.nn.functional.relu", "torch.nn.modules.linear.Linear"]
    assert set(refused) == {"posix.system", "io.open", "runpy._run_code", "builtins.eval", "torch.hub.load",
                            "torch.nn.functional.torch", "torch.nn.modules.linear.math", "antigravity.fly",
                            "harness_cases.nosuchcase.Model", "cases.simple.SimpleModel"}
    assert "antigravity" not in sys.modules and "harness_cases.nosuchcase" not in sys.modules


@pytest.mark.slow
@pytest.mark.parametrize("vouch", [False, True])
def test_corrupt_runs_no_code_named_by_an_artifact(sealed: Path, tmp_path: Path, vouch: bool) -> None:
    import runpy

    from tests.conftest import records, run_cli

    markers = {name: tmp_path / name for name in ("system", "io-open", "run-code")}
    folder = tmp_path / "copy" / sealed.name
    shutil.copytree(sealed, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    entry = next(e for e in manifest["entries"] if e["format"] == "state_dict_zip")
    target = folder / entry["file"]
    # os.system last: torch 2.13 refuses the posix module even when allowlisted, which ends the load there
    torch.save({"weight": torch.ones(2), "a": Reduce(io.open, str(markers["io-open"]), "w"),
                "b": Reduce(runpy._run_code, f"open({str(markers['run-code'])!r}, 'w')", {}),
                "c": Reduce(os.system, f"touch {markers['system']}")}, target)
    entry["file_bytes"], entry["file_hash"] = target.stat().st_size, hash_file(target)
    write_atomic(folder / MANIFEST_NAME, manifest)
    results = tmp_path / "corrupt.jsonl"
    result = run_cli("corrupt", str(folder.parent), "--results", str(results), "--count", "2", "--format",
                     "state_dict_zip", *(["--trust"] if vouch else []), timeout=300)
    assert not [m for m in markers.values() if m.exists()], "corrupt ran code an artifact named"
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    (refused,) = [r for r in records(results) if r["check"] == "corrupt:source/refused-globals"]
    assert all(name in refused["detail"] for name in ("posix.system", "io.open", "runpy._run_code"))
    assert "refused-globals" in result.stdout


# -- check --torch: nothing planted in the current directory runs ------------------------------------


@pytest.mark.slow
def test_check_ignores_an_interpreter_and_a_torch_planted_in_the_current_directory(tmp_path: Path) -> None:
    import subprocess

    release = torch.__version__.split("+")[0]
    cwd, markers = tmp_path / "hostile", {name: tmp_path / name for name in ("planted-python", "planted-torch")}
    planted = cwd / ".nox" / "releases" / f"torch-{release}"
    (planted / "bin").mkdir(parents=True)
    (planted / "harness-installed.json").write_text("[]")
    (planted / "bin" / "python").write_text(f"#!/bin/sh\ntouch {markers['planted-python']}\nexit 1\n")
    (planted / "bin" / "python").chmod(0o755)
    (cwd / "torch.py").write_text(f"open({str(markers['planted-torch'])!r}, 'w')\n")
    (cwd / "sitecustomize.py").write_text(f"open({str(markers['planted-torch'])!r}, 'w')\n")
    # the release's environment: the documented cache ($CKPT_HARNESS_ENVS), here this interpreter
    envs = tmp_path / "envs" / f"torch-{release}"
    (envs / "bin").mkdir(parents=True)
    (envs / "harness-check.json").write_text("{}")
    (envs / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (envs / "bin" / "python").chmod(0o755)
    models = tmp_path / "models"
    models.mkdir()
    (models / "usermod.py").write_text(f"open({str(tmp_path / 'imported-from-path')!r}, 'w')\n")
    checkpoint = cwd / "sd.pt"
    torch.save({"w": torch.ones(3)}, checkpoint)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CKPT_HARNESS_ENVS": str(tmp_path / "envs")}
    # -P: the harness's own CLI process does not put cwd first either (the console script never does)
    result = subprocess.run([sys.executable, "-P", "-m", "harness", "check", "sd.pt", "--torch", release, "--json",
                             "--import", "usermod", "--path", str(models)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert not [m for m in markers.values() if m.exists()], "check ran a file planted in the current directory"
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert report["verdicts"][release]["status"] == "ok"
    assert (tmp_path / "imported-from-path").exists(), "--path did not make the --import module importable"


@pytest.mark.slow
def test_a_merge_into_a_folder_sealed_by_someone_else_does_not_launder_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.consume import collect
    from harness.produce import produce

    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "someone-else" / "key"))
    folder = produce(tmp_path / "out", ["simple"], ["state_dict_zip"])
    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "me" / "key"))
    assert {a.entry["case"]: a.trusted for a in collect([folder])} == {"simple": False}
    produce(tmp_path / "out", ["tied"], ["state_dict_zip"])  # merges its case into the existing folder
    assert {a.entry["case"]: a.trusted for a in collect([folder])} == {"simple": False, "tied": True}
    produce(tmp_path / "out", ["lenet"], ["state_dict_zip"])  # a second merge keeps what this user sealed
    assert {a.entry["case"]: a.trusted for a in collect([folder])} == {"simple": False, "tied": True, "lenet": True}
