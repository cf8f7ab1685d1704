"""The produce → manifest → consume flow, run for real through the CLI in subprocesses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness import compat, containers
from harness.case import CASES
from harness.formats import FORMATS
from tests.conftest import index, records, run_cli, tree_state

ENV_FIELDS = {"torch", "torchvision", "python", "numpy", "platform", "device", "byteorder"}
RECORD_FIELDS = {"producer", "consumer", "case", "format", "check", "status", "detail", "duration_s", "load_mode",
                 "warnings"}


def only_env(produced: Path) -> Path:
    (env_dir,) = [p for p in produced.iterdir() if p.is_dir()]
    return env_dir


@pytest.fixture(scope="module")
def consumed(produced: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict], str]:
    before = tree_state(produced)
    results = tmp_path_factory.mktemp("results") / "records.jsonl"
    result = run_cli("consume", str(produced), "--results", str(results))
    assert tree_state(produced) == before, "consume modified the artifacts folder"
    return result.returncode, records(results), result.stdout


def test_manifest_records_environment_and_every_artifact(produced: Path) -> None:
    manifest = json.loads((only_env(produced) / "manifest.json").read_text())
    assert ENV_FIELDS <= set(manifest["env"])
    for case in CASES:
        applicable = [f for f in FORMATS if f.applicable(case)]
        entries = {e["format"]: e for e in manifest["entries"] if e["case"] == case.name}
        assert set(entries) == {f.name for f in applicable}, case.name
        missing = case.missing_requirement()
        for fmt in applicable:
            entry = entries[fmt.name]
            if missing:
                assert entry["status"] == "skip" and "does not import" in entry["detail"]
            elif fmt.unavailable():
                assert entry["status"] == "skip"
            elif entry["status"] == "skip":  # the format refuses this case (CannotSave): a skip that says why
                assert entry["detail"].startswith("cannot be saved in this format here: "), entry
            else:
                assert entry["status"] == "ok", entry
                assert containers.artifact_bytes(only_env(produced) / entry["file"]) == entry["file_bytes"]
                tensors = entry["fingerprint"]["tensors"]
                assert tensors and all({"dtype", "shape", "stride", "share_group", "hash"} <= set(t)
                                       for t in tensors.values())
                if "optimizer" in fmt.holds:
                    assert entry["optimizer"] and entry["next_step"]


def test_tied_case_records_its_sharing_groups(produced: Path) -> None:
    manifest = json.loads((only_env(produced) / "manifest.json").read_text())
    entry = next(e for e in manifest["entries"] if e["case"] == "tied" and e["format"] == "state_dict_zip")
    groups = {name: t["share_group"] for name, t in entry["fingerprint"]["tensors"].items()}
    assert groups["head.weight"] == groups["embed.weight"]
    assert groups["table_row"] == groups["table"]


@pytest.mark.skipif(compat.import_optional("torchvision")[1] is None,
                    reason="torchvision imports here; the skip path is not exercised")
def test_torchvision_cases_skip_with_a_reason_where_it_does_not_import(produced: Path) -> None:
    manifest = json.loads((only_env(produced) / "manifest.json").read_text())
    for case in ("resnet18", "vgg16"):
        assert manifest["cases"][case]["skip"].startswith("torchvision does not import here")


def test_consume_passes_every_check_in_the_same_environment(consumed: tuple[int, list[dict], str]) -> None:
    returncode, recs, _ = consumed
    bad = [r for r in recs if r["problem"]]
    assert not bad, bad[:3]
    assert returncode == 0
    assert all(RECORD_FIELDS <= set(r) for r in recs)
    # the only failures are known incompatibilities, each carrying its reason
    assert all(r["expected"]["reason"] for r in recs if r["status"] in ("fail", "error"))


def test_pickles_are_loaded_three_ways(consumed: tuple[int, list[dict], str]) -> None:
    _, recs, _ = consumed
    loads = {(r["format"], r["load_mode"]): r for r in recs if r["case"] == "simple" and r["check"] == "load"}
    for fmt in ("state_dict_zip", "whole_model_legacy", "training_checkpoint_extras"):
        assert {mode for f, mode in loads if f == fmt} == {"default", "weights_only", "unsafe"}
    assert loads[("state_dict_zip", "weights_only")]["status"] == "pass"
    assert loads[("whole_model_zip", "unsafe")]["status"] == "pass"
    refused = loads[("training_checkpoint_extras", "weights_only")]
    assert refused["status"] == "error" and refused["expected"]["id"]
    if hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        assert "argparse.Namespace" in refused["detail"]
    assert {(f, m) for f, m in loads if f == "torchscript_script"} == {("torchscript_script", "default")}


def test_every_produced_artifact_is_loaded_and_checked(produced: Path, consumed: tuple[int, list[dict], str]) -> None:
    _, recs, _ = consumed
    by_key = index(recs)
    manifest = json.loads((only_env(produced) / "manifest.json").read_text())
    for entry in manifest["entries"]:
        if entry["status"] != "ok":
            assert by_key[(entry["case"], entry["format"], "produce")]["status"] == "skip"
            continue
        loads = [r for r in recs if (r["case"], r["format"], r["check"]) == (entry["case"], entry["format"], "load")]
        assert any(r["status"] == "pass" for r in loads), (entry["format"], "no load mode loaded it")
        assert all(r["status"] == "pass" or r["expected"] for r in loads), (entry["format"], loads)
        for check in ("tensors", "sharing", "outputs", "resave"):
            assert by_key[(entry["case"], entry["format"], check)]["status"] == "pass", (entry["format"], check)


def test_resume_and_mode_checks_run_where_they_apply(consumed: tuple[int, list[dict], str]) -> None:
    _, recs, _ = consumed
    by_key = index(recs)
    assert by_key[("lenet", "training_checkpoint", "resume")]["status"] == "pass"
    assert "bit-identical" in by_key[("lenet", "training_checkpoint", "resume")]["detail"]
    assert by_key[("gan", "multi_model", "resume")]["status"] == "pass"
    assert by_key[("batchnorm", "whole_model_zip", "mode")]["detail"].endswith("(root in train mode)")
    assert by_key[("simple", "state_dict_zip", "mode")]["status"] == "skip"


def test_cross_environment_consume_uses_tolerances(produced: Path, tmp_path: Path) -> None:
    """An artifact from 'another' environment is judged within tolerance, not bitwise. (The fake
    producer keeps a real version number: expectations with torch ranges must not match it.)"""
    source = only_env(produced)
    foreign = tmp_path / "art" / "torch-2.13.0+elsewhere"
    shutil.copytree(source, foreign)
    manifest = json.loads((foreign / "manifest.json").read_text())
    manifest["env"]["torch"], manifest["env_id"] = "2.13.0+elsewhere", foreign.name
    (foreign / "manifest.json").write_text(json.dumps(manifest))
    # the edited manifest breaks the seal, as a folder from another machine has none: vouch for it, as CI does
    result = run_cli("consume", str(tmp_path / "art"), "--results", str(tmp_path / "r.jsonl"), "--trust")
    recs = records(tmp_path / "r.jsonl")
    assert result.returncode == 0, [r for r in recs if r["problem"]][:3]
    by_key = index(recs)
    assert by_key[("lenet", "state_dict_zip", "outputs")]["producer"]["torch"] == "2.13.0+elsewhere"
    assert "across environments" in by_key[("lenet", "state_dict_zip", "outputs")]["detail"]
    assert "the producer's uninterrupted step" in by_key[("lenet", "training_checkpoint", "resume")]["detail"]


def test_artifact_without_manifest_entry_is_never_consumed(produced: Path, tmp_path: Path) -> None:
    copy = tmp_path / "art"
    shutil.copytree(produced, copy)
    stray = only_env(copy) / "simple" / "stray.pt"
    shutil.copy(only_env(copy) / "simple" / "state_dict_zip.pt", stray)
    result = run_cli("consume", str(copy), "--results", str(tmp_path / "r.jsonl"))
    assert result.returncode == 0
    assert not any("stray" in r["artifact"] for r in records(tmp_path / "r.jsonl"))


def test_load_warnings_are_kept_in_the_record(tmp_path: Path) -> None:
    args = ["--plugin", "tests.plugins.broken", "--case", "simple", "--format", "noisy_load"]
    assert run_cli("produce", "--out", str(tmp_path / "art"), *args).returncode == 0
    run_cli("consume", str(tmp_path / "art"), "--results", str(tmp_path / "r.jsonl"), "--plugin",
            "tests.plugins.broken")
    load = index(records(tmp_path / "r.jsonl"))[("simple", "noisy_load", "load")]
    assert "UserWarning: noisy loader says hello" in load["warnings"]


def test_roundtrip_prints_a_summary_and_exits_zero() -> None:
    result = run_cli("roundtrip", "--case", "simple", "--case", "gan")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checkpoint-harness results" in result.stdout and "multi_model" in result.stdout


def test_produce_refuses_to_overwrite_without_replace(tmp_path: Path) -> None:
    args = ["produce", "--out", str(tmp_path), "--case", "simple", "--format", "state_dict_zip"]
    assert run_cli(*args).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert run_cli(*args, "--replace").returncode == 0
