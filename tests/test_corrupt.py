"""`ckpt-harness corrupt`: mutators aim where they say, outcomes are classified from outside the
load process (real crashes, hangs and memory blow-ups included), sources are never modified,
bad input is one line."""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from harness.corrupt import MUTATORS, OUTCOMES, Source
from harness.corrupt.layout import describe, opcodes, pickle_globals
from harness.corrupt.mutators.zip_entries import read_entries
from harness.corrupt.runner import classify, mutation_for, plan
from tests.conftest import records, run_cli, tree_state
from tests.test_bad_input import assert_one_line_error

PLUGIN = "tests.plugins.misbehaving_loaders"


def _source(tmp_path: Path, kind: str) -> Source:
    state = {"weight": torch.arange(64, dtype=torch.float32).reshape(8, 8), "bias": torch.ones(8)}
    path = tmp_path / f"{kind}.bin"
    if kind == "safetensors":
        import safetensors.torch

        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=kind == "zip")
    data = path.read_bytes()
    return Source(path, "state_dict_zip", "simple", "test", {}, {"file": path.name}, data, describe(data))


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_layouts_find_the_regions_mutators_aim_at(tmp_path: Path, kind: str) -> None:
    layout = _source(tmp_path, kind).layout
    assert layout.kind == kind
    assert layout.region("tensor-data")
    if kind == "zip":
        start, end = layout.region("central-directory")
        data = _source(tmp_path, kind).data
        assert data[start:start + 4] == b"PK\x01\x02" and data.find(b"PK\x05\x06") >= end - 22
    if kind != "safetensors":
        assert opcodes(_source(tmp_path, kind).data, layout.pickles[-1 if kind == "zip" else 3])[-1][0] == "STOP"


def test_pickle_globals_are_read_without_unpickling(tmp_path: Path) -> None:
    source = _source(tmp_path, "zip")
    assert "torch._utils._rebuild_tensor_v2" in pickle_globals(source.data, source.layout)


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_every_mutator_is_deterministic_and_changes_the_bytes(tmp_path: Path, kind: str) -> None:
    source = _source(tmp_path, kind)
    items = plan([source], count=40, seed=7)
    families = {item.mutator.name for item in items if item.mutator}
    expected = {"truncate", "bitflip", "pickle-ops", "lengths"} | ({"zip-entries"} if kind == "zip" else set())
    if kind == "safetensors":
        expected -= {"pickle-ops"}
    assert families == expected
    for item in items[1:]:
        first, again = mutation_for(item, seed=7), mutation_for(item, seed=7)
        assert first == again
        if "rewrite-unchanged" not in first.label:
            assert first.data != source.data, first.label
    assert any(mutation_for(item, seed=8) != mutation_for(item, seed=7) for item in items[1:])


def test_truncation_cuts_inside_the_central_directory(tmp_path: Path) -> None:
    source = _source(tmp_path, "zip")
    mutator = MUTATORS.get("truncate")
    labels = [mutator.mutate(source, random.Random(i), i) for i in range(10)]
    central = [m for m in labels if m.label.startswith("truncate:central-directory@")]
    start, end = source.layout.region("central-directory")
    assert central and all(start <= len(m.data) < end for m in central)


def test_zip_entry_mutations_remove_and_duplicate(tmp_path: Path) -> None:
    source = _source(tmp_path, "zip")
    mutator = MUTATORS.get("zip-entries")
    names = [info.filename for info, _ in read_entries(source.data)]
    removed = mutator.mutate(source, random.Random(0), 0)
    duplicated = mutator.mutate(source, random.Random(0), 2)
    assert len(read_entries(removed.data)) == len(names) - 1
    dup_names = [info.filename for info in zipfile.ZipFile(io.BytesIO(duplicated.data)).infolist()]
    assert len(dup_names) == len(names) + 1 and len(set(dup_names)) == len(names)


def test_oversized_lengths_are_declared_not_written(tmp_path: Path) -> None:
    source = _source(tmp_path, "safetensors")
    mutator = MUTATORS.get("lengths")
    damaged = mutator.mutate(source, random.Random(1), 0)
    assert damaged.label.startswith("lengths:safetensors-header-length")
    assert struct.unpack("<Q", damaged.data[:8])[0] >= len(source.data) - 7
    assert len(damaged.data) == len(source.data)


@pytest.mark.parametrize("exitcode, killed, report, tail, outcome", [
    (None, True, None, "", "hang"),
    (-11, False, None, "", "crash"),
    (-6, False, None, "terminate called after throwing an instance of 'std::bad_alloc'", "memory-blowup"),
    (-9, False, None, "", "memory-blowup"),
    (3, False, None, "", "crash"),
    (0, False, None, "", "unclassified"),
    (0, False, {"outcome": "clean-exception", "detail": "RuntimeError: x"}, "", "clean-exception"),
    (0, False, {"outcome": "silent-corruption", "detail": "w differs"}, "", "silent-corruption"),
    (1, False, "not started", "", "unclassified"),  # died in start-up, before loading: no finding
])
def test_classification_from_outside(tmp_path: Path, exitcode, killed, report, tail, outcome) -> None:
    result, output = tmp_path / "result.json", tmp_path / "output.txt"
    output.write_text(tail)
    if isinstance(report, dict):
        result.write_text(json.dumps(report))
    assert classify(exitcode, killed, result, output, 1.0, started=report != "not started")[0] == outcome
    assert outcome in OUTCOMES


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corrupt-art")
    formats = ["state_dict_zip", "state_dict_legacy", "safetensors", "torchscript_script", "whole_model_zip"]
    result = run_cli("produce", "--out", str(out), "--case", "simple", *[a for f in formats for a in ("--format", f)])
    assert result.returncode == 0, result.stderr
    return out


def test_ci_style_run_classifies_everything_and_leaves_sources_alone(small: Path, tmp_path: Path) -> None:
    before = tree_state(small)
    out = tmp_path / "c.jsonl"
    result = run_cli("corrupt", str(small), "--results", str(out), "--count", "60", "--seed", "3")
    assert tree_state(small) == before
    recs = records(out)
    assert len(recs) == 65  # five baselines and sixty damaged copies
    outcomes = [r["check"].split("/", 1)[1] for r in recs]
    assert "unclassified" not in outcomes and set(outcomes) <= set(OUTCOMES)
    assert all(r["check"].startswith("corrupt:") and r["load_mode"] in ("weights_only", "default") for r in recs)
    baselines = {r["format"]: r["check"] for r in recs if r["check"].startswith("corrupt:baseline/")}
    # The undamaged controls load exactly what the manifest lists (a whole module only where this
    # release's weights_only can rebuild it with the file's own globals allowed).
    assert baselines.pop("whole_model_zip") in ("corrupt:baseline/intact", "corrupt:baseline/clean-exception")
    assert set(baselines.values()) == {"corrupt:baseline/intact"}, baselines
    assert result.returncode == (1 if any(r["problem"] for r in recs) else 0), result.stdout + result.stderr
    assert "100.0 % classified" in result.stdout
    # The same seed gives the same damaged copies.
    again = tmp_path / "again.jsonl"
    rerun = run_cli("corrupt", str(small), "--results", str(again), "--count", "60", "--seed", "3")
    assert again.exists(), (f"the rerun wrote no results (exit {rerun.returncode}): "
                           f"{rerun.stdout[-2000:]}{rerun.stderr[-2000:]}")
    assert sorted(r["artifact"] for r in records(again)) == sorted(r["artifact"] for r in recs)


def test_crash_hang_memory_and_silent_loads_are_findings_not_aborts(tmp_path: Path) -> None:
    art = tmp_path / "art"
    formats = ["misbehaving_segfault", "misbehaving_hang", "misbehaving_allocate", "misbehaving_exit",
               "misbehaving_silent", "state_dict_zip"]
    produced = run_cli("produce", "--out", str(art), "--case", "simple", "--plugin", PLUGIN,
                       *[a for f in formats for a in ("--format", f)])
    assert produced.returncode == 0, produced.stderr
    out = tmp_path / "c.jsonl"
    result = run_cli("corrupt", str(art), "--results", str(out), "--count", "0", "--timeout", "5",
                     "--plugin", PLUGIN)
    by_format = {r["format"]: r for r in records(out)}
    assert by_format["misbehaving_segfault"]["check"] == "corrupt:baseline/crash"
    assert "SIGSEGV" in by_format["misbehaving_segfault"]["detail"]
    assert by_format["misbehaving_hang"]["check"] == "corrupt:baseline/hang"
    assert by_format["misbehaving_allocate"]["check"] == "corrupt:baseline/memory-blowup"
    assert by_format["misbehaving_exit"]["check"] == "corrupt:baseline/crash"
    assert by_format["misbehaving_silent"]["check"] == "corrupt:baseline/silent-corruption"
    assert by_format["state_dict_zip"]["check"] == "corrupt:baseline/intact"
    assert by_format["misbehaving_segfault"]["problem"] == "unexpected error"
    assert by_format["misbehaving_hang"]["status"] == "error"
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("make", ["missing", "file", "empty_file", "not_a_checkpoint_folder"])
def test_bad_input_is_one_line(tmp_path: Path, make: str) -> None:
    target = tmp_path / "target"
    if make == "file":
        target.write_bytes(b"PK\x03\x04 not really")
    elif make == "empty_file":
        target.write_bytes(b"")
    elif make == "not_a_checkpoint_folder":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    result = run_cli("corrupt", str(target), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(target))


def test_bad_options_are_one_line(small: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("corrupt", str(small), "--results", str(tmp_path)), "is a folder")
    assert_one_line_error(run_cli("corrupt", str(small), "--results", str(tmp_path / "r"), "--count", "-1"), "--count")
    assert_one_line_error(run_cli("corrupt", str(small), "--results", str(tmp_path / "r"), "--format", "nope"),
                          "unknown format 'nope'")
    assert_one_line_error(run_cli("corrupt", str(small), "--results", str(tmp_path / "r"), "--max-bytes", "10"),
                          "no artifact to damage")
