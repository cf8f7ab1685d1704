"""Byte-identical files from two producers: the checks that declare ``same_for_identical_files`` run once
(:class:`harness.consume.Reuse`), the record of the second names the first in ``reused_from``, and a manifest
that says something else about the same bytes is judged again, never handed the first verdict."""

from __future__ import annotations

import copy
import dataclasses
import importlib
from pathlib import Path
from typing import Any

import pytest

from harness import env as envmod
from harness.checks import CHECKS, Check, Context, Outcome
from harness.records import Record

consume_module = importlib.import_module("harness.consume")
Artifact, Reuse = consume_module.Artifact, consume_module.Reuse

REUSED = ("map_location", "cuda_tagged", "resave")


def _artifact(small_artifacts: Path, case: str = "tied", fmt: str = "state_dict_zip") -> Any:
    (found,) = [a for a in consume_module.collect([small_artifacts])
                if a.entry["case"] == case and a.entry["format"] == fmt]
    return found


def _from_another_producer(artifact: Any, env_id: str = "torch-9.9.9-py3.11-cpu") -> Any:
    """The same file, listed by a second manifest (another release wrote the same bytes)."""
    manifest = {**artifact.manifest, "env_id": env_id}
    return dataclasses.replace(artifact, manifest=manifest, entry=copy.deepcopy(artifact.entry))


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    runs: dict[str, int] = {}
    for check in CHECKS:
        def counted(ctx: Context, real: Any = check.run, name: str = check.name) -> Outcome:
            runs[name] = runs.get(name, 0) + 1
            return real(ctx)
        monkeypatch.setattr(check, "run", counted)
    return runs


def _by_check(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {(r.check, r.load_mode): r for r in records}


def test_the_device_checks_and_resave_declare_it_and_the_manifest_checks_do_not() -> None:
    assert sorted(c.name for c in CHECKS if c.same_for_identical_files) == sorted(REUSED)
    assert Check.same_for_identical_files is False


def test_a_byte_identical_file_runs_those_checks_once(small_artifacts: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = _artifact(small_artifacts)
    second = _from_another_producer(first)
    runs = _counting(monkeypatch)
    consumer, reuse = envmod.describe("cpu"), Reuse()
    one = _by_check(list(consume_module.consume_artifact(first, consumer, tmp_path, reuse)))
    after_first = dict(runs)
    two = _by_check(list(consume_module.consume_artifact(second, consumer, tmp_path, reuse)))
    assert set(one) == set(two)
    for name in REUSED:
        assert runs[name] == after_first[name] == 1, name
    assert runs["tensors"] == 2 * after_first["tensors"] > 0  # compares with each manifest: runs for each
    for key, record in two.items():
        if key[0] in REUSED:
            assert record.reused_from == first.label and one[key].reused_from is None
            assert (record.status, record.detail) == (one[key].status, one[key].detail)
            assert record.status == "pass", record.detail
            assert record.artifact.startswith("torch-9.9.9-py3.11-cpu/")
        else:
            assert record.reused_from is None, key


def test_without_a_shared_reuse_every_artifact_runs_its_checks(small_artifacts: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = _artifact(small_artifacts)
    runs = _counting(monkeypatch)
    consumer = envmod.describe("cpu")
    list(consume_module.consume_artifact(first, consumer, tmp_path))
    records = list(consume_module.consume_artifact(_from_another_producer(first), consumer, tmp_path))
    assert all(runs[name] == 2 for name in REUSED)
    assert not any(r.reused_from for r in records)


def _damaged_fingerprint(artifact: Any) -> tuple[Any, str]:
    """The same bytes, listed by a manifest whose fingerprint of one float tensor says other values."""
    other = _from_another_producer(artifact, "torch-8.8.8-py3.11-cpu")
    tensors = other.entry["fingerprint"]["tensors"]
    name = next(n for n, d in tensors.items() if d["dtype"].startswith("torch.float"))
    tensors[name]["hash"] = "0" * 32
    return other, name


def test_a_manifest_that_says_other_values_is_judged_again_and_fails(small_artifacts: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = _artifact(small_artifacts)
    damaged, name = _damaged_fingerprint(first)
    assert Reuse.file_key(first) != Reuse.file_key(damaged)
    runs = _counting(monkeypatch)
    consumer, reuse = envmod.describe("cpu"), Reuse()
    list(consume_module.consume_artifact(first, consumer, tmp_path, reuse))
    records = _by_check(list(consume_module.consume_artifact(damaged, consumer, tmp_path, reuse)))
    assert runs["map_location"] == runs["cuda_tagged"] == 2
    for check in ("map_location", "cuda_tagged"):
        (record,) = [r for (c, _), r in records.items() if c == check]
        assert record.status == "fail" and record.reused_from is None
        assert f"{name}: values differ" in record.detail


def test_what_makes_two_files_the_same(small_artifacts: Path) -> None:
    first = _artifact(small_artifacts)
    same = _from_another_producer(first)
    assert Reuse.file_key(first) == Reuse.file_key(same) is not None
    for change in ({"file_hash": "f" * 32}, {"file_bytes": 1}, {"format": "state_dict_legacy"}, {"case": "simple"}):
        assert Reuse.file_key(dataclasses.replace(same, entry={**same.entry, **change})) != Reuse.file_key(first)
    assert Reuse.file_key(dataclasses.replace(same, trusted=not first.trusted)) != Reuse.file_key(first)
    assert Reuse.file_key(dataclasses.replace(same, entry={**same.entry, "status": "skip"})) is None


def test_byte_identical_files_are_one_task_for_the_workers(small_artifacts: Path) -> None:
    first = _artifact(small_artifacts)
    other = _artifact(small_artifacts, "batchnorm")
    skipped = dataclasses.replace(first, entry={"case": "tied", "format": "x", "status": "skip"})
    artifacts = [first, other, _from_another_producer(first), skipped, _from_another_producer(other), skipped]
    assert consume_module.identical_files(artifacts) == [[0, 2], [1, 4], [3], [5]]


def test_the_key_holds_the_mode_the_map_location_and_the_check(small_artifacts: Path) -> None:
    first = _artifact(small_artifacts)
    reuse = Reuse()
    check = CHECKS.get("resave")
    key = reuse.key(first, check, "unsafe", None)
    assert key is not None and reuse.outcome(key) is None
    reuse.keep(key, Outcome("pass", "ok"), "a/b")
    reuse.keep(key, Outcome("fail", "later"), "c/d")  # the first outcome kept stays
    assert reuse.outcome(key) == (Outcome("pass", "ok"), "a/b")
    assert reuse.outcome(reuse.key(first, check, "weights_only", None)) is None
    assert reuse.outcome(reuse.key(first, check, "unsafe", "cpu")) is None
    assert reuse.outcome(reuse.key(first, CHECKS.get("map_location"), "unsafe", None)) is None
    assert reuse.key(first, CHECKS.get("tensors"), "unsafe", None) is None
    assert reuse.outcome(None) is None
