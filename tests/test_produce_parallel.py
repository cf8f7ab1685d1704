"""``produce --jobs N`` writes a serial run's manifest: the same entries in the same order, the same fingerprints
and file hashes, the same error entry for a case that cannot be built; a worker that dies is one line."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import cli, produce_pool
from harness.case import CASES, Case
from harness.consume_pool import cores
from harness.errors import HarnessError
from harness.formats import FORMATS
from harness.produce import produce

PLUGIN = "tests.plugins.produce_workers"
#: small cases (sharing, buffers in train mode, two models in one file) and one whose build raises
COMPARED = ("simple", "tied", "unbuildable", "batchnorm", "gan")

#: formats whose files differ between any two runs, serial or not: compared by their fingerprints only
PROCESS_DEPENDENT_BYTES = {
    "state_dict_legacy": "the legacy pickle's storage keys are memory addresses",
    "whole_model_legacy": "the legacy pickle's storage keys are memory addresses",
    "safetensors": "save_model lists the names it drops for shared tensors in set order (str hashes are per process)",
    "dcp": "its .metadata holds a random save id and the path of the staging folder",
    "torchscript_script": "a random serialization id; constants in set order (str hashes are per process)",
    "torchscript_trace": "a random serialization id; the debug info holds the stack of the caller that traced",
}


def _planted() -> tuple[Case, ...]:
    """The plugin's cases; importing it registers them for good, so it is imported in a scope that undoes that."""
    with CASES.scoped():
        module = importlib.import_module(PLUGIN)
    return tuple(module.PLANTED)


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def _comparable(manifest: dict[str, Any], unreproducible: set[tuple[str, str]]) -> dict[str, Any]:
    """The manifest without its timings; without the file's hash and size for the entries in ``unreproducible``."""
    def entry(e: dict[str, Any]) -> dict[str, Any]:
        by_bytes = (e["case"], e["format"]) not in unreproducible
        dropped = {"save_seconds"} | (set() if by_bytes else {"file_hash", "file_bytes"})
        return {k: v for k, v in e.items() if k not in dropped}

    return {**{k: v for k, v in manifest.items() if k != "created"}, "entries": [entry(e) for e in manifest["entries"]]}


def _differences(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """``(case, format, [fields that differ])`` for each pair of entries that differ."""
    return [(a["case"], a["format"], sorted(k for k in {*a, *b} if a.get(k) != b.get(k)))
            for a, b in zip(ours, theirs, strict=True) if a != b]


def _file_hashes(folder: Path, under: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / under).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A serial run and one with two workers, of the same cases in every format available here."""
    formats = [f.name for f in FORMATS if not f.unavailable()]
    folders: dict[str, Path] = {}
    progress: list[str] = []
    with CASES.temporarily(*_planted()):
        for label, jobs in (("serial", 1), ("parallel", 2)):
            folders[label] = produce(tmp_path_factory.mktemp(label), COMPARED, formats, jobs=jobs, plugins=[PLUGIN],
                                     progress=progress.append if label == "parallel" else None)
    return {"folders": folders, "manifests": {label: _manifest(f) for label, f in folders.items()},
            "progress": progress}


@pytest.mark.slow
def test_two_workers_write_the_serial_manifest(runs: dict[str, Any]) -> None:
    """Every field but the timings is a serial run's; a file of :data:`PROCESS_DEPENDENT_BYTES` is held to
    its fingerprints, not to its hash and size (two serial runs differ there too)."""
    serial, parallel = runs["manifests"]["serial"], runs["manifests"]["parallel"]
    unreproducible = {(e["case"], e["format"]) for e in serial["entries"] if e["format"] in PROCESS_DEPENDENT_BYTES}
    ours, theirs = _comparable(parallel, unreproducible), _comparable(serial, unreproducible)
    assert _differences(ours["entries"], theirs["entries"]) == []
    assert ours == theirs
    assert [e["file_hash"] for e in parallel["entries"] if (e["case"], e["format"]) == ("simple", "state_dict_zip")] \
        == [e["file_hash"] for e in serial["entries"] if (e["case"], e["format"]) == ("simple", "state_dict_zip")]
    assert [(e["case"], e["format"]) for e in parallel["entries"]] == [(e["case"], e["format"])
                                                                      for e in serial["entries"]]
    assert sorted(parallel["cases"]) == sorted(COMPARED)
    folders = runs["folders"]
    assert _file_hashes(folders["parallel"], "outputs") == _file_hashes(folders["serial"], "outputs")


@pytest.mark.slow
def test_a_case_that_cannot_be_built_is_the_same_error_entry_in_a_worker(runs: dict[str, Any]) -> None:
    detail = "building case unbuildable failed: RuntimeError: planted: this case cannot be built"
    for label in ("serial", "parallel"):
        manifest = runs["manifests"][label]
        assert manifest["cases"]["unbuildable"] == {"exercises": "a build that raises", "error": detail}
        entries = [e for e in manifest["entries"] if e["case"] == "unbuildable"]
        assert entries and all(e == {"case": "unbuildable", "format": e["format"], "status": "error",
                                     "detail": detail} for e in entries)


@pytest.mark.slow
def test_parallel_progress_names_each_case_once_in_case_order(runs: dict[str, Any]) -> None:
    assert runs["progress"] == list(COMPARED)


@pytest.mark.slow
def test_a_worker_that_dies_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    with CASES.temporarily(*_planted()), pytest.raises(HarnessError) as raised:
        produce(tmp_path / "out", ["worker_killer", "simple"], ["state_dict_zip"], jobs=2, plugins=[PLUGIN])
    assert str(raised.value) == ("a produce worker process ended abruptly (killed, or out of memory?) before case "
                                 "'worker_killer' was done; run produce with --jobs 1 to see which case")
    assert not list((tmp_path / "out").rglob("manifest.json"))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # the staging folder is gone


def test_the_heavy_cases_are_handed_out_first() -> None:
    names = ["simple", "transformer", "vgg16", "tied", "resnet18", "gan"]
    assert [names[i] for i in produce_pool.hand_out_order(names)] == ["vgg16", "resnet18", "transformer", "simple",
                                                                      "tied", "gan"]
    assert produce_pool.hand_out_order(["b", "a"]) == [0, 1]


def test_one_case_is_produced_in_process_whatever_jobs_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("one case started a worker pool")

    monkeypatch.setattr(produce_pool, "run", no_pool)
    folder = produce(tmp_path, ["simple"], ["state_dict_zip"], jobs=4)
    assert [(e["case"], e["format"], e["status"]) for e in _manifest(folder)["entries"]] == [
        ("simple", "state_dict_zip", "ok")]


@pytest.mark.parametrize("command", ["produce", "roundtrip"])
def test_jobs_is_at_least_one_and_defaults_to_the_core_count(command: str, capsys: pytest.CaptureFixture) -> None:
    parser = cli.build_parser()
    out = ["--out", "x"] if command == "produce" else []
    assert parser.parse_args([command, *out]).jobs == cores()
    assert parser.parse_args([command, *out, "--jobs", "3"]).jobs == 3
    with pytest.raises(SystemExit) as raised:
        parser.parse_args([command, *out, "--jobs", "0"])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (f"ckpt-harness: error: ckpt-harness {command}: argument --jobs: expected a "
                                       f"whole number of at least 1, not '0' (see ckpt-harness {command} --help)\n")


@pytest.mark.parametrize("command", ["produce", "roundtrip"])
def test_the_commands_hand_jobs_and_plugins_to_produce(command: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.consume  # noqa: F401  (the modules, which the package's functions of the same names hide)
    import harness.produce  # noqa: F401

    produce_module, consume_module = sys.modules["harness.produce"], sys.modules["harness.consume"]
    seen: dict[str, Any] = {}

    def fake_produce(out: Path, *args: Any, **kwargs: Any) -> Path:
        seen.update(kwargs)
        return Path(out)

    monkeypatch.setattr(produce_module, "produce", fake_produce)
    monkeypatch.setattr(consume_module, "consume", lambda *args, **kwargs: [])
    out = ["--out", str(tmp_path / "art")] if command == "produce" else []
    cli.main([command, *out, "--case", "simple", "--jobs", "3", "--plugin", "tests.plugins"])
    assert seen == {"jobs": 3, "plugins": ["tests.plugins"]}


@pytest.mark.parametrize(("argv", "starts"), [
    (["--jobs", "2"], True),
    (["--jobs", "2", "--case", "simple", "--case", "tied"], True),
    (["--jobs", "2", "--case", "simple"], False),
    (["--jobs", "1"], False),
])
def test_the_workers_server_starts_before_the_command_imports_torch_only_when_workers_will_run(
        argv: list[str], starts: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.commands import _options

    started: list[bool] = []
    monkeypatch.setattr(produce_pool, "start_server", lambda: started.append(True))
    _options.start_workers_early(cli.build_parser().parse_args(["produce", "--out", "x", *argv]))
    assert started == ([True] if starts else [])


def test_a_case_or_format_named_twice_is_produced_once(tmp_path: Path) -> None:
    """Two writers of one file would race in a parallel run; a serial one listed the entry twice."""
    folder = produce(tmp_path, ["simple", "simple"], ["state_dict_zip", "state_dict_zip"])
    assert [(e["case"], e["format"]) for e in _manifest(folder)["entries"]] == [("simple", "state_dict_zip")]
