"""Containers and the formats added with them (sharded safetensors, DCP, ONNX, the plain training
checkpoint), in process: each recogniser, each load refusal and each damage the loaders must catch."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import compat, containers
from harness.case import CASES, prepare
from harness.checks import _devices
from harness.containers import ContainerError, sharded
from harness.fingerprint import fingerprint
from harness.formats import FORMATS, CannotSave, LoadRequest, Unsupported

NEW_FORMATS = ("sharded_safetensors", "dcp", "onnx", "plain_training_checkpoint")


@pytest.fixture(scope="module")
def tied():
    return prepare(CASES.get("tied"))


def _saved(name: str, prepared, folder: Path) -> Path:
    fmt = FORMATS.get(name)
    path = folder / f"{name}{fmt.suffix}"
    fmt.save(fmt.payload(prepared), path)
    return path


# -- containers ----------------------------------------------------------------------------------


def _torch_files(folder: Path) -> dict[str, Path]:
    state = {"w": torch.arange(6.0)}
    files = {"torch_zip": folder / "zip.pt", "legacy": folder / "legacy.pt", "torchscript": folder / "ts.pt",
             "safetensors": folder / "t.safetensors", "tar": folder / "a.tar"}
    torch.save(state, files["torch_zip"])
    torch.save(state, files["legacy"], _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(files["torchscript"]))
    import safetensors.torch

    safetensors.torch.save_file(state, str(files["safetensors"]))
    with tarfile.open(files["tar"], "w") as archive:  # a tar whose last member is a zip
        archive.add(files["torch_zip"], arcname="inner.pt")
    return files


def test_each_container_is_recognised_by_exactly_one_module(tmp_path: Path) -> None:
    for kind, path in _torch_files(tmp_path).items():
        recognised = [c.name for c in containers.CONTAINERS if c.folder == path.is_dir() and c.recognises(path)]
        assert recognised == [kind], (path.name, recognised)
    assert zipfile.is_zipfile(tmp_path / "a.tar")  # why zipfile.is_zipfile alone is not a recogniser
    (tmp_path / "text.txt").write_text("not a checkpoint")
    assert containers.identify(tmp_path / "text.txt") is None


def test_tensor_bytes_by_container(tmp_path: Path) -> None:
    files = _torch_files(tmp_path)
    for kind in ("torch_zip", "legacy", "safetensors"):
        assert containers.get(kind).tensor_bytes(files[kind]) == 24, kind


def test_folder_artifacts_hash_every_file_and_refuse_links(tmp_path: Path, tied) -> None:
    folder = _saved("sharded_safetensors", tied, tmp_path)
    before = containers.artifact_hash(folder)
    shard = next(folder.glob("*.safetensors"))
    shard.rename(folder / "renamed.safetensors")
    assert containers.artifact_hash(folder) != before
    (folder / "link").symlink_to("/etc/passwd")
    with pytest.raises(ContainerError, match="not a regular file"):
        containers.artifact_hash(folder)


def test_a_file_hash_is_the_plain_file_hash(tmp_path: Path) -> None:
    from harness.fingerprint import hash_file

    path = _torch_files(tmp_path)["torch_zip"]
    assert containers.artifact_hash(path) == hash_file(path)


# -- the load door -----------------------------------------------------------------------------


def test_requests_outside_the_capabilities_are_refused(tmp_path: Path, tied) -> None:
    path = _saved("safetensors", tied, tmp_path)
    fmt = FORMATS.get("safetensors")
    with pytest.raises(Unsupported, match="BytesIO"):
        fmt.open(path, LoadRequest(source="BytesIO", case=tied.case))
    with pytest.raises(Unsupported, match="dict map_location"):
        fmt.open(path, LoadRequest(map_location={"cuda:0": "cpu"}, case=tied.case))
    with pytest.raises(Unsupported, match="weights_only"):
        fmt.open(path, LoadRequest("weights_only", case=tied.case))
    state = FORMATS.get("state_dict_zip")
    saved = _saved("state_dict_zip", tied, tmp_path)
    with pytest.raises(Unsupported, match="full unpickle"):
        state.open(saved, LoadRequest("unsafe"))
    assert set(state.open(saved, LoadRequest("unsafe", trusted=True))) == set(tied.single.state_dict())


def test_checks_apply_from_capabilities_not_names() -> None:
    entry = {"file_bytes": 10}
    assert _devices.applies(FORMATS.get("export_pt2"), entry)  # takes no map_location
    assert _devices.applies(FORMATS.get("sharded_safetensors"), entry) is None
    assert _devices.retaggable(FORMATS.get("sharded_safetensors"), entry)
    assert _devices.retaggable(FORMATS.get("state_dict_legacy"), entry) is None
    assert "mmap" not in FORMATS.get("state_dict_legacy").capabilities.sources


# -- sharded safetensors -----------------------------------------------------------------------


def test_sharded_round_trip_keeps_tied_weights_whole(tmp_path: Path, tied) -> None:
    folder = _saved("sharded_safetensors", tied, tmp_path)
    index = sharded.read_index(folder)
    assert len(set(index["weight_map"].values())) > 1 and "head.weight" not in index["weight_map"]
    assert all(sharded.SHARD_PATTERN.match(name) for name in index["weight_map"].values())
    import safetensors

    with safetensors.safe_open(str(folder / index["weight_map"]["embed.weight"]), "pt") as shard:
        assert shard.metadata() == {"format": "pt"}
    model = FORMATS.get("sharded_safetensors").open(folder, LoadRequest(case=tied.case))
    assert model.head.weight is model.embed.weight
    assert fingerprint(model.state_dict())["tensors"] == fingerprint(tied.single.state_dict())["tensors"]


@pytest.mark.parametrize("damage, message", [
    ("missing_shard", "missing shard model-00001-of-0000"),
    ("stale_index", "stale index: table is mapped to"),
    ("absent_from_index", "hidden.bias in model-0000"),
    ("stale_total", "stale index: metadata.total_size"),
    ("escaping_name", "is not a file name inside the folder"),
    ("unlisted_shard", "is in the folder but not in the index"),
])
def test_sharded_damage_is_an_error_naming_it(tmp_path: Path, tied, damage: str, message: str) -> None:
    folder = _saved("sharded_safetensors", tied, tmp_path)
    index_path = folder / sharded.INDEX_NAME
    index = json.loads(index_path.read_text())
    weight_map = index["weight_map"]
    if damage == "missing_shard":
        (folder / weight_map["table"]).unlink()
    elif damage == "stale_index":
        other = next(v for v in weight_map.values() if v != weight_map["table"])
        weight_map["table"] = other
    elif damage == "absent_from_index":
        del weight_map["hidden.bias"]
    elif damage == "stale_total":
        index["metadata"]["total_size"] += 4
    elif damage == "escaping_name":
        weight_map["table"] = "../outside.safetensors"
    else:
        (folder / "model-00009-of-00009.safetensors").write_bytes((folder / weight_map["table"]).read_bytes())
    index_path.write_text(json.dumps(index))
    with pytest.raises(ContainerError, match=message.replace(".", r"\.")):
        FORMATS.get("sharded_safetensors").open(folder, LoadRequest(case=tied.case))


def test_sharded_weight_the_model_needs_but_no_file_has_is_an_error(tmp_path: Path, tied) -> None:
    from harness.formats.sharded_safetensors import load_into

    state = dict(tied.single.state_dict())
    del state["hidden.weight"]
    with pytest.raises(ContainerError, match="missing \\['hidden.weight'\\]"):
        load_into(tied.case.fresh_models()["model"], state)
    state = dict(tied.single.state_dict())
    del state["head.weight"]  # re-tied by the model's own code: not missing
    load_into(tied.case.fresh_models()["model"], state)


# -- DCP ---------------------------------------------------------------------------------------


@pytest.mark.skipif(bool(compat.dcp_unavailable()), reason=str(compat.dcp_unavailable()))
def test_dcp_round_trip_without_a_process_group_resumes(tmp_path: Path) -> None:
    prepared = prepare(CASES.get("batchnorm"))
    fmt = FORMATS.get("dcp")
    payload = fmt.payload(prepared)
    folder = tmp_path / "dcp"
    fmt.save(payload, folder)
    assert containers.identify(folder).name == "dcp"
    with pytest.raises(Unsupported, match="full unpickle"):
        fmt.open(folder, LoadRequest(case=prepared.case))
    loaded = fmt.open(folder, LoadRequest(case=prepared.case, trusted=True))
    assert fingerprint(fmt.contents(loaded)) == fingerprint(fmt.contents(payload))
    optimizer = torch.optim.Adam(prepared.case.fresh_models()["model"].parameters())
    optimizer.load_state_dict(fmt.resumable(loaded).optimizer_states["model"])
    original = prepared.optimizers["model"].state_dict()
    assert all(torch.equal(optimizer.state_dict()["state"][i]["exp_avg"], s["exp_avg"])
               for i, s in original["state"].items())


@pytest.mark.skipif(bool(compat.dcp_format_utils()), reason=str(compat.dcp_format_utils()))
def test_dcp_converts_to_and_from_torch_save(tmp_path: Path) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save, torch_save_to_dcp

    prepared = prepare(CASES.get("simple"))
    fmt = FORMATS.get("dcp")
    fmt.save(fmt.payload(prepared), tmp_path / "dcp")
    dcp_to_torch_save(str(tmp_path / "dcp"), str(tmp_path / "flat.pt"))
    flat = torch.load(tmp_path / "flat.pt", weights_only=False)  # written by this test
    assert set(flat["model"]) == set(prepared.single.state_dict())
    torch_save_to_dcp(str(tmp_path / "flat.pt"), str(tmp_path / "again"))
    again = fmt.open(tmp_path / "again", LoadRequest(case=prepared.case, trusted=True))
    assert fingerprint(again["model"])["tensors"] == fingerprint(prepared.single.state_dict())["tensors"]


# -- ONNX --------------------------------------------------------------------------------------


@pytest.mark.skipif(bool(compat.onnx_unavailable()), reason=str(compat.onnx_unavailable()))
def test_onnx_export_runs_in_onnxruntime_within_tolerance(tmp_path: Path) -> None:
    prepared = prepare(CASES.get("simple"))
    fmt = FORMATS.get("onnx")
    path = _saved("onnx", prepared, tmp_path)
    assert containers.identify(path).name == "onnx"
    loaded = fmt.open(path, LoadRequest(source="BytesIO"))
    runner = fmt.modules(loaded, prepared.case)["model"]
    with torch.no_grad():
        expected = prepared.single.eval()(*prepared.inputs["model"])
    assert torch.allclose(runner(*prepared.inputs["model"]), expected, atol=prepared.case.atol)
    assert set(fmt.contents(loaded)) and fmt.stored_tensor_bytes(path) == sum(
        t.numel() * t.element_size() for t in fmt.contents(loaded).values())


@pytest.mark.skipif(bool(compat.onnx_unavailable()), reason=str(compat.onnx_unavailable()))
def test_onnx_refusal_is_a_skip_and_a_wrong_export_an_error() -> None:
    from harness.formats import onnx_format

    class Complex(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.view_as_real(x.to(torch.complex64) * (1 + 2j)).sum(-1)

    with pytest.raises(CannotSave, match="torch.onnx.export refuses"):
        onnx_format.export(Complex(), (torch.ones(2),))
    prepared = prepare(CASES.get("simple"))
    real = onnx_format.OnnxModule.forward
    try:
        onnx_format.OnnxModule.forward = lambda self, *x: real(self, *x) + 1  # type: ignore[method-assign]
        with pytest.raises(ValueError, match="differ from the eager model"):
            FORMATS.get("onnx").payload(prepared)
        drift = 10 * prepared.case.atol  # rounding-sized: refused as not comparable, never passed
        onnx_format.OnnxModule.forward = lambda self, *x: real(self, *x) + drift  # type: ignore[method-assign]
        with pytest.raises(CannotSave, match="kernel rounding"):
            FORMATS.get("onnx").payload(prepared)
    finally:
        onnx_format.OnnxModule.forward = real  # type: ignore[method-assign]


@pytest.mark.skipif(bool(compat.onnx_unavailable()), reason=str(compat.onnx_unavailable()))
def test_onnx_keeps_a_nested_output_structure_in_its_own_encoding() -> None:
    """The output layout is the harness's JSON, not torch's private pytree format (1.13 has no
    ``treespec_dumps``; found by the 4-release matrix): a dict of a tuple comes back as one."""
    from harness.formats import onnx_format

    class Nested(nn.Module):
        def forward(self, x: torch.Tensor) -> dict:
            return {"sum": x.sum(-1), "pair": (x * 2, [x - 1])}

    x = torch.arange(6.0).reshape(2, 3)
    proto = onnx_format.export(Nested(), (x,))
    layout = {p.key: p.value for p in proto.metadata_props}[onnx_format.OUTPUT_LAYOUT]
    assert "treespec" not in layout and '"dict"' in layout
    out = onnx_format.OnnxModule(proto)(x)
    assert list(out) == ["sum", "pair"] and isinstance(out["pair"], tuple) and isinstance(out["pair"][1], list)
    assert torch.equal(out["pair"][1][0], x - 1) and torch.equal(out["sum"], x.sum(-1))


def test_onnx_output_layout_refuses_a_layout_that_does_not_match_the_outputs() -> None:
    from harness.formats import onnx_format

    flat = [torch.zeros(1), torch.ones(1)]
    layout = onnx_format.output_layout((flat[0], {"b": flat[1]}))
    assert onnx_format.rebuild_outputs(layout, flat)[1]["b"] is flat[1]
    with pytest.raises(ValueError, match="does not match"):
        onnx_format.rebuild_outputs(layout, flat[:1])
    with pytest.raises(ValueError, match="fewer"):
        onnx_format.rebuild_outputs(layout, flat + [torch.zeros(1)])
    with pytest.raises(ValueError, match="does not match"):
        onnx_format.rebuild_outputs({"set": []}, flat)
    with pytest.raises(CannotSave, match="returns a set"):
        onnx_format.output_layout(set())


# -- the plain training checkpoint -------------------------------------------------------------


def test_plain_training_checkpoint_holds_exactly_the_four_keys(tmp_path: Path, tied) -> None:
    fmt = FORMATS.get("plain_training_checkpoint")
    path = _saved("plain_training_checkpoint", tied, tmp_path)
    loaded = fmt.open(path, LoadRequest("weights_only"))  # no numpy, no RNG: weights_only takes it
    assert set(loaded) == {"epoch", "model_state_dict", "optimizer_state_dict", "loss"}
    torch.save({**loaded, "rng": torch.get_rng_state()}, path)
    with pytest.raises(ValueError, match="not the plain training layout"):
        fmt.open(path, LoadRequest("weights_only"))


def test_every_new_format_is_registered_with_its_container() -> None:
    for name in NEW_FORMATS:
        fmt = FORMATS.get(name)
        assert containers.get(fmt.capabilities.container)


# -- check: inspection recognises the new containers -------------------------------------------


def test_inspection_recognises_the_new_containers(tmp_path: Path, tied) -> None:
    from harness.commands.check import _validate
    from harness.inspect import CORRUPT, inspect_file

    folder = _saved("sharded_safetensors", tied, tmp_path)
    found = inspect_file(folder)
    assert (found.container, found.structure) == ("sharded_safetensors", "state_dict")
    assert found.bytes == FORMATS.get("sharded_safetensors").stored_tensor_bytes(folder)
    _validate([folder])
    saved = {"dcp": None, "onnx": None}
    if not compat.dcp_unavailable():
        saved["dcp"] = _saved("dcp", tied, tmp_path)
    if not compat.onnx_unavailable():
        saved["onnx"] = _saved("onnx", prepare(CASES.get("simple")), tmp_path)
    for name, path in saved.items():
        if path is not None:
            assert inspect_file(path).container == name
    next(folder.glob("model-*.safetensors")).unlink()
    broken = inspect_file(folder)
    assert broken.container == CORRUPT and "missing shard" in broken.detail
    (tmp_path / "plain").mkdir()
    assert inspect_file(tmp_path / "plain").container == "not a checkpoint"


# -- DCP across 2 gloo processes (subprocesses: slow) ------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(bool(compat.dcp_unavailable()), reason=str(compat.dcp_unavailable()))
def test_dcp_reshards_between_two_gloo_ranks_and_one_process(tmp_path: Path) -> None:
    from harness.formats import _dcp_ranks as ranks

    answers = ranks.run_ranks("save", tmp_path / "two", tmp_path / "two.pt")
    assert answers == [{"rank": 0, "saved": True}, {"rank": 1, "saved": True}], answers
    assert len(list((tmp_path / "two").glob("*.distcp"))) == 2
    assert ranks.load(tmp_path / "two", tmp_path / "two.pt", sharded=False) == []  # 2 -> 1
    reference = torch.load(tmp_path / "two.pt", weights_only=True)
    assert set(reference["optim"]["state"]["0.weight"]) >= {"exp_avg", "exp_avg_sq", "step"}
    ranks.save(tmp_path / "one", tmp_path / "one.pt", sharded=False)
    answers = ranks.run_ranks("load", tmp_path / "one", tmp_path / "one.pt")  # 1 -> 2
    assert [a.get("differences") for a in answers] == [[], []], answers
    # the comparison can fail: a reference from other weights is caught on both ranks
    other = torch.load(tmp_path / "one.pt", weights_only=True)
    other["optim"]["state"]["0.weight"]["exp_avg"] += 1
    torch.save(other, tmp_path / "other.pt")
    answers = ranks.run_ranks("load", tmp_path / "one", tmp_path / "other.pt")
    assert all(a["differences"] == [".optim.state.0.weight.exp_avg: values differ"] for a in answers), answers


@pytest.mark.skipif(bool(compat.onnx_unavailable()), reason=str(compat.onnx_unavailable()))
def test_onnx_export_refuses_an_empty_batch_without_running_the_exporter() -> None:
    from harness.formats import onnx_format

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    with pytest.raises(CannotSave, match="zero-size dimension"):
        onnx_format.export(model, (torch.zeros(0, 3),))
    assert onnx_format.export(model, (torch.zeros(2, 3),)).graph.node, "a real batch still exports"
