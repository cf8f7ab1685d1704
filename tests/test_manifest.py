"""Unit tests for harness.manifest and harness.formats._torch_pickle."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from harness.errors import HarnessError
from harness.fingerprint import hash_file
from harness.formats import _torch_pickle
from harness.formats._torch_pickle import legacy_tensor_bytes
from harness.manifest import MANIFEST_NAME, SCHEMA, find_manifests, read, verify_artifact, write_atomic


def _valid_document() -> dict:
    return {"schema": SCHEMA, "env": {"torch": "x", "python": "3.11", "device": "cpu"}, "env_id": "env-a",
            "entries": [], "cases": {}}


def _assert_one_line_naming(exc_info, path: pathlib.Path) -> None:
    message = str(exc_info.value)
    assert str(path) in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------
# write_atomic
# --------------------------------------------------------------------------------------------


def test_write_atomic_writes_json_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "er" / MANIFEST_NAME
    document = {"b": [1, 2, {"c": None}], "a": "x"}
    write_atomic(target, document)
    assert json.loads(target.read_text()) == document
    assert [p.name for p in target.parent.iterdir()] == [MANIFEST_NAME]


def test_write_atomic_replaces_by_rename(tmp_path):
    target = tmp_path / MANIFEST_NAME
    write_atomic(target, {"version": "old"})
    with open(target) as old_reader:
        write_atomic(target, {"version": "new", "pad": "x" * 5000})
        # a reader holding the old file still sees the complete old document: the new one was
        # renamed over it, not written into it
        assert json.loads(old_reader.read()) == {"version": "old"}
    assert json.loads(target.read_text())["version"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


def test_write_atomic_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / MANIFEST_NAME
    write_atomic(target, {"version": "old"})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_atomic(target, {"bad": object()})  # not JSON serialisable, fails mid-write
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------


def test_read_valid_document_sets_root(tmp_path):
    path = tmp_path / "env-a" / MANIFEST_NAME
    write_atomic(path, _valid_document())
    document = read(path)
    assert document["env_id"] == "env-a"
    assert document["_root"] == str(path.parent)


BAD_MANIFESTS = {
    "invalid_json": '{"schema": 1, "env": ',
    "empty_file": "",
    "not_an_object": "[1, 2, 3]",
    "wrong_schema": json.dumps({**_valid_document(), "schema": SCHEMA + 1}),
    "schema_missing": json.dumps({k: v for k, v in _valid_document().items() if k != "schema"}),
    "lacks_env": json.dumps({k: v for k, v in _valid_document().items() if k != "env"}),
    "lacks_env_id": json.dumps({k: v for k, v in _valid_document().items() if k != "env_id"}),
    "lacks_entries": json.dumps({k: v for k, v in _valid_document().items() if k != "entries"}),
    "lacks_cases": json.dumps({k: v for k, v in _valid_document().items() if k != "cases"}),
}


@pytest.mark.parametrize("text", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_read_rejects_bad_manifest(tmp_path, text):
    path = tmp_path / MANIFEST_NAME
    path.write_text(text)
    with pytest.raises(HarnessError) as exc_info:
        read(path)
    _assert_one_line_naming(exc_info, path)


@pytest.mark.parametrize("key", ["env", "env_id", "entries", "cases"])
def test_read_missing_key_is_named(tmp_path, key):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({k: v for k, v in _valid_document().items() if k != key}))
    with pytest.raises(HarnessError, match=f"field {key}: Field required"):
        read(path)


def test_read_rejects_missing_and_binary_files(tmp_path):
    missing = tmp_path / "nowhere" / MANIFEST_NAME
    with pytest.raises(HarnessError) as exc_info:
        read(missing)
    _assert_one_line_naming(exc_info, missing)

    binary = tmp_path / MANIFEST_NAME
    binary.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with pytest.raises(HarnessError) as exc_info:
        read(binary)
    _assert_one_line_naming(exc_info, binary)


# --------------------------------------------------------------------------------------------
# find_manifests
# --------------------------------------------------------------------------------------------


def test_find_manifests_missing_folder(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(HarnessError) as exc_info:
        find_manifests([missing])
    _assert_one_line_naming(exc_info, missing)


def test_find_manifests_file_instead_of_folder(tmp_path):
    a_file = tmp_path / "file.json"
    a_file.write_text("{}")
    with pytest.raises(HarnessError) as exc_info:
        find_manifests([a_file])
    _assert_one_line_naming(exc_info, a_file)


def test_find_manifests_folder_without_manifests(tmp_path):
    (tmp_path / "env-a" / "case" / "deeper").mkdir(parents=True)
    (tmp_path / "env-a" / "case" / "state_dict.pt").write_bytes(b"x")
    # a manifest three levels down does not count: only <root>/, <root>/*/ and <root>/*/*/manifest.json
    (tmp_path / "env-a" / "case" / "deeper" / MANIFEST_NAME).write_text("{}")
    with pytest.raises(HarnessError) as exc_info:
        find_manifests([tmp_path])
    _assert_one_line_naming(exc_info, tmp_path)


def test_find_manifests_two_levels_deep_like_the_corpus(tmp_path):
    """``cases/corpus/<release>/<env-id>/manifest.json``: consume cases/corpus finds every release's."""
    for release in ("2.6.0", "1.13.1"):
        write_atomic(tmp_path / release / f"env-{release}" / MANIFEST_NAME, _valid_document())
    write_atomic(tmp_path / ".hidden" / "env-x" / MANIFEST_NAME, _valid_document())
    assert find_manifests([tmp_path]) == [tmp_path / "1.13.1" / "env-1.13.1" / MANIFEST_NAME,
                                          tmp_path / "2.6.0" / "env-2.6.0" / MANIFEST_NAME]


def test_find_manifests_finds_the_committed_corpus():
    corpus = pathlib.Path(__file__).resolve().parents[1] / "cases" / "corpus"
    found = find_manifests([corpus])
    assert len(found) == len([p for p in corpus.iterdir() if p.is_dir()]) >= 3
    for path in found:  # every committed manifest validates against the typed contract
        assert read(path)["_root"] == str(path.parent)


def test_find_manifests_direct_and_subfolders(tmp_path):
    parent = tmp_path / "artifacts"
    for env in ("env-b", "env-a"):
        write_atomic(parent / env / MANIFEST_NAME, _valid_document())
    (parent / "not-an-env").mkdir()
    assert find_manifests([parent]) == [parent / "env-a" / MANIFEST_NAME, parent / "env-b" / MANIFEST_NAME]
    # a folder that is itself one environment's
    assert find_manifests([parent / "env-b"]) == [parent / "env-b" / MANIFEST_NAME]
    # several roots, in order
    assert find_manifests([parent / "env-b", parent / "env-a"]) == [
        parent / "env-b" / MANIFEST_NAME, parent / "env-a" / MANIFEST_NAME]


def test_find_manifests_one_bad_root_raises(tmp_path):
    write_atomic(tmp_path / "env-a" / MANIFEST_NAME, _valid_document())
    with pytest.raises(HarnessError):
        find_manifests([tmp_path, tmp_path / "absent"])


# Regression: pathlib's "*" matches dot-names, so the hidden staging folder produce() works in
# (".<env-id>.XXXX") and the ".<env-id>.old" of a --replace were once picked up by a concurrent consume.
def test_find_manifests_ignores_hidden_staging_folders(tmp_path):
    write_atomic(tmp_path / "env-a" / MANIFEST_NAME, _valid_document())
    write_atomic(tmp_path / ".env-b.k3j9x2" / MANIFEST_NAME, _valid_document())
    write_atomic(tmp_path / ".env-a.old" / MANIFEST_NAME, _valid_document())
    assert find_manifests([tmp_path]) == [tmp_path / "env-a" / MANIFEST_NAME]


# --------------------------------------------------------------------------------------------
# verify_artifact
# --------------------------------------------------------------------------------------------


def _artifact(tmp_path, data: bytes = bytes(range(256)) * 4):
    root = tmp_path / "env-a"
    path = root / "case" / "state_dict.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    document = {"_root": str(root)}
    entry = {"file": "case/state_dict.pt", "file_bytes": len(data), "file_hash": hash_file(path)}
    return document, entry, path


def test_verify_artifact_accepts_untouched_file(tmp_path):
    document, entry, _ = _artifact(tmp_path)
    verify_artifact(document, entry)  # no exception


def test_verify_artifact_missing_file(tmp_path):
    document, entry, path = _artifact(tmp_path)
    path.unlink()
    with pytest.raises(HarnessError) as exc_info:
        verify_artifact(document, entry)
    _assert_one_line_naming(exc_info, path)


def test_verify_artifact_directory_in_place_of_file(tmp_path):
    document, entry, path = _artifact(tmp_path)
    path.unlink()
    path.mkdir()
    with pytest.raises(HarnessError):
        verify_artifact(document, entry)


@pytest.mark.parametrize("offset", [0, 517, -1])
def test_verify_artifact_one_byte_changed_same_size(tmp_path, offset):
    document, entry, path = _artifact(tmp_path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert path.stat().st_size == entry["file_bytes"]
    with pytest.raises(HarnessError) as exc_info:
        verify_artifact(document, entry)
    _assert_one_line_naming(exc_info, path)


def test_verify_artifact_truncated_file(tmp_path):
    document, entry, path = _artifact(tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(HarnessError):
        verify_artifact(document, entry)


# --------------------------------------------------------------------------------------------
# legacy_tensor_bytes
# --------------------------------------------------------------------------------------------


def _save_legacy(obj, path: pathlib.Path) -> pathlib.Path:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] != b"PK"  # really the legacy stream, not a zip
    return path


def test_legacy_tensor_bytes_known_sizes(tmp_path):
    state = {"w": torch.zeros(100, dtype=torch.float32), "n": torch.zeros(3, dtype=torch.int64)}
    path = _save_legacy(state, tmp_path / "sd.pt")
    assert legacy_tensor_bytes(path) == 424


def test_legacy_tensor_bytes_mixed_dtypes_and_module_state_dict(tmp_path):
    state = {
        "h": torch.zeros(7, dtype=torch.float16),  # 14
        "b": torch.zeros(5, dtype=torch.bool),  # 5
        "c": torch.zeros(2, dtype=torch.complex64),  # 16
        "s": torch.tensor(1.0, dtype=torch.float64),  # 8
        "e": torch.zeros(0),  # 0
        "step": 12,
    }
    assert legacy_tensor_bytes(_save_legacy(state, tmp_path / "mixed.pt")) == 14 + 5 + 16 + 8

    lin = torch.nn.Linear(10, 3)  # 30 + 3 float32
    assert legacy_tensor_bytes(_save_legacy(lin.state_dict(), tmp_path / "lin.pt")) == 33 * 4


def test_legacy_tensor_bytes_via_harness_save(tmp_path):
    path = tmp_path / "h.pt"
    _torch_pickle.save({"x": torch.zeros(4, 4)}, path, legacy=True)
    assert legacy_tensor_bytes(path) == 64


def test_legacy_tensor_bytes_shared_storage_counted_once(tmp_path):
    base = torch.arange(50, dtype=torch.float32)
    state = {"a": base, "b": base, "view": base[2:5], "reshaped": base.view(5, 10),
             "other": torch.zeros(4, dtype=torch.int64)}
    assert legacy_tensor_bytes(_save_legacy(state, tmp_path / "shared.pt")) == 50 * 4 + 4 * 8


def test_legacy_tensor_bytes_view_saves_whole_storage(tmp_path):
    base = torch.arange(50, dtype=torch.float32)
    # the legacy stream writes the whole storage under a view
    assert legacy_tensor_bytes(_save_legacy({"v": base[2:5]}, tmp_path / "view.pt")) == 50 * 4


def test_legacy_tensor_bytes_no_tensors(tmp_path):
    assert legacy_tensor_bytes(_save_legacy({"epoch": 3, "name": "x"}, tmp_path / "none.pt")) == 0


class _TouchOnUnpickle:
    """Unpickling this creates ``marker``: stands in for arbitrary code in a pickle."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_legacy_tensor_bytes_never_runs_pickle_code(tmp_path):
    marker = tmp_path / "pwned"
    path = _save_legacy({"w": torch.zeros(10, dtype=torch.float32), "evil": _TouchOnUnpickle(marker)},
                        tmp_path / "evil.pt")
    assert not marker.exists()
    assert legacy_tensor_bytes(path) == 40
    assert not marker.exists()

    # the file really does run code when unpickled unsafely (so the check above can fail)
    torch.load(path, weights_only=False)
    assert marker.exists()
