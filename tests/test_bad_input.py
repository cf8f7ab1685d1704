"""Bad input to consume gets one line naming the file and exit 2; nothing under ARTIFACTS changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli, tree_state


@pytest.fixture()
def small_artifacts(tmp_path: Path) -> Path:
    out = tmp_path / "art"
    result = run_cli("produce", "--out", str(out), "--case", "simple", "--format", "state_dict_zip",
                     "--format", "whole_model_legacy")
    assert result.returncode == 0, result.stderr
    return out


def env_dir(out: Path) -> Path:
    return next(p for p in out.iterdir() if p.is_dir())


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckpt-harness: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli("consume", str(tmp_path / "empty"), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(tmp_path / "empty"), "no manifest.json")


def test_missing_folder(tmp_path: Path) -> None:
    result = run_cli("consume", str(tmp_path / "nope"), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, "no such folder")


def test_manifest_that_does_not_parse(small_artifacts: Path, tmp_path: Path) -> None:
    manifest = env_dir(small_artifacts) / "manifest.json"
    manifest.write_text(manifest.read_text()[:-20])
    before = tree_state(small_artifacts)
    result = run_cli("consume", str(small_artifacts), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(manifest), "does not parse")
    assert tree_state(small_artifacts) == before


def test_manifest_of_another_kind(small_artifacts: Path, tmp_path: Path) -> None:
    manifest = env_dir(small_artifacts) / "manifest.json"
    manifest.write_text(json.dumps({"hello": "world"}))
    result = run_cli("consume", str(small_artifacts), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(manifest), "not a checkpoint-harness manifest")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_artifact_that_does_not_match_its_manifest(small_artifacts: Path, tmp_path: Path, damage: str) -> None:
    artifact = env_dir(small_artifacts) / "simple" / "whole_model_legacy.pt"
    data = bytearray(artifact.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        artifact.write_bytes(bytes(data))
    elif damage == "truncate":
        artifact.write_bytes(bytes(data[:-10]))
    else:
        artifact.unlink()
    before = tree_state(small_artifacts)
    result = run_cli("consume", str(small_artifacts), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(artifact))
    assert tree_state(small_artifacts) == before
    # Nothing was loaded: a tampered pickle never reaches weights_only=False.
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


def test_unknown_case_name_is_one_line(tmp_path: Path) -> None:
    result = run_cli("produce", "--out", str(tmp_path), "--case", "no_such_case")
    assert_one_line_error(result, "unknown case 'no_such_case'", "simple")


def test_plugin_that_does_not_import(tmp_path: Path) -> None:
    result = run_cli("produce", "--out", str(tmp_path), "--plugin", "no.such.module")
    assert_one_line_error(result, "plugin 'no.such.module' does not import")


def test_manifest_pointing_outside_is_still_read_only(small_artifacts: Path, tmp_path: Path) -> None:
    """A second consume over the same folder leaves it byte-identical (no caches, no rewrites)."""
    copy = tmp_path / "copy"
    shutil.copytree(small_artifacts, copy)
    before = tree_state(copy)
    for _ in range(2):
        assert run_cli("consume", str(copy), "--results", str(tmp_path / "r.jsonl")).returncode == 0
    assert tree_state(copy) == before


@pytest.mark.parametrize("command", ["produce", "consume", "roundtrip"])
@pytest.mark.parametrize("device, needle", [("gpu0", "is not a device torch knows"),
                                            ("mps", "runs on cpu or cuda only")])
def test_device_torch_does_not_offer_is_one_line(tmp_path: Path, command: str, device: str, needle: str) -> None:
    args = {"produce": ["--out", str(tmp_path)], "consume": [str(tmp_path), "--results", str(tmp_path / "r.jsonl")],
            "roundtrip": []}[command]
    result = run_cli(command, *args, "--device", device)
    assert_one_line_error(result, f"--device {device!r}", needle)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("roundtrip", "--device", "cuda:1", "--case", "simple")
    assert_one_line_error(result, "--device 'cuda:1'", "CUDA is not available here", "use --device cpu")


def test_cuda_index_beyond_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import compat, devices
    from harness.errors import HarnessError

    monkeypatch.setattr(compat, "cuda_device_count", lambda: 1)
    assert devices.validate("cuda:0") == "cuda:0" and devices.validate("cuda") == "cuda"
    assert devices.validate("cpu:0") == "cpu"
    with pytest.raises(HarnessError, match=r"has 1 CUDA device\(s\); use cpu, cuda or cuda:0..cuda:0"):
        devices.validate("cuda:3")


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"PK\x03\x04 truncated zip"])
def test_a_file_where_an_artifacts_folder_belongs(tmp_path: Path, content: bytes) -> None:
    stray = tmp_path / "model.pt"
    stray.write_bytes(content)
    result = run_cli("consume", str(stray), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(stray), "not a folder")
    assert stray.read_bytes() == content
