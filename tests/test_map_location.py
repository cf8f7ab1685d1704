"""Device mapping: the CUDA-tag rewrite read back, every map_location form, and checks that can fail."""

from __future__ import annotations

import importlib
import pickletools
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import compat, cuda_tags
from harness import env as envmod
from harness.checks import _devices as checks
from harness.containers.legacy import OBJECT_PICKLE
from harness.containers.legacy import pickle_spans as legacy_pickle_spans
from harness.fingerprint import hash_file
from harness.formats import FORMATS, LoadRequest
from tests.conftest import index, records, run_cli

consume_module = importlib.import_module("harness.consume")
NO_GPU = not compat.cuda_device_count()


def _state() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = model.state_dict()
    state["view"] = state["0.weight"][1:]  # a view shares its storage: one record for two tensors
    return state


@pytest.fixture(params=["zip", "legacy"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.pt"
    torch.save(_state(), path, _use_new_zipfile_serialization=request.param == "zip")
    return path


def _pickle_strings(path: Path) -> list[str]:
    """Every string in the object pickle, by pickletools (an independent read-back)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    else:
        with open(path, "rb") as stream:
            spans = legacy_pickle_spans(stream, OBJECT_PICKLE + 1)
            stream.seek(spans[3][0])
            data = stream.read(spans[3][1] - spans[3][0])
    return [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]


def test_retag_rewrites_every_location_and_reads_back(saved: Path, tmp_path: Path) -> None:
    before = hash_file(saved)
    original = cuda_tags.storage_locations(saved)
    assert {r.location for r in original} == {"cpu"}
    assert len(original) == 8 and len({r.key for r in original}) == 7  # the view's record names its base's storage
    copy = tmp_path / "tagged" / saved.name
    records_ = cuda_tags.retag(saved, copy, "cuda:0")
    assert [r.key for r in records_] == [r.key for r in original]
    assert {r.location for r in records_} == {"cuda:0"}
    strings = _pickle_strings(copy)
    assert "cuda:0" in strings and "cpu" not in strings
    assert hash_file(saved) == before  # the original is never touched


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-only error; a GPU machine loads the copy instead")
def test_tagged_copy_needs_map_location_without_cuda(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy" / saved.name
    cuda_tags.retag(saved, copy, "cuda:0")
    with pytest.raises(Exception, match=checks.CUDA_UNAVAILABLE):
        torch.load(copy, **compat.torch_load_kwargs(True if compat.has_weights_only() else None))
    reference = _state()
    fmt = FORMATS.get(f"state_dict_{saved.stem}")
    mode = "weights_only" if compat.has_weights_only() else "default"
    for form in checks.forms_for(fmt):
        for source in checks.sources_for(fmt):
            loaded = fmt.open(copy, LoadRequest(mode, form.value(), source))
            for key, tensor in reference.items():
                assert str(loaded[key].device) == form.device, (form.label, source)
                if form.device == "cpu":
                    assert torch.equal(loaded[key], tensor), (form.label, source, key)
            assert loaded["view"].storage_offset() == reference["view"].storage_offset()


def test_observer_sees_the_dict_remap(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy" / saved.name
    cuda_tags.retag(saved, copy, "cuda:1")
    with cuda_tags.observed_locations() as seen:
        torch.load(copy, map_location={"cuda:1": "cpu"})
    assert seen == ["cpu"] * 7  # one restore per storage, not per tensor
    with cuda_tags.observed_locations() as seen:
        try:
            torch.load(copy, map_location={"cuda:1": "cuda:0"})
        except RuntimeError:
            assert NO_GPU
    assert seen and set(seen) == {"cuda:0"}
    with cuda_tags.observed_locations() as outside:
        pass
    torch.load(saved)
    assert outside == []  # loads outside the block are not recorded


def test_rewrite_refuses_what_it_cannot_do_safely(tmp_path: Path) -> None:
    path = tmp_path / "shared.pt"
    torch.save({"w": torch.ones(2), "device": "cpu"}, path)  # the string 'cpu' is also data here
    with pytest.raises(cuda_tags.TagError, match="shared with other data"):
        cuda_tags.retag(path, tmp_path / "out.pt", "cuda:0")
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(cuda_tags.TagError, match="in place"):
        cuda_tags.retag(path, path, "cuda:0")


# -- the checks, run by consume ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("maploc")
    formats = [a for f in ("state_dict_zip", "state_dict_legacy", "training_checkpoint") for a in ("--format", f)]
    result = run_cli("produce", "--out", str(out), "--case", "simple", "--case", "batchnorm", *formats)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def consumed(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("maploc-results") / "r.jsonl"
    result = run_cli("consume", str(artifacts), "--results", str(results))
    assert result.returncode == 0, result.stdout + result.stderr
    return index(records(results))


@pytest.mark.parametrize("case", ["simple", "batchnorm"])
@pytest.mark.parametrize("fmt", ["state_dict_zip", "state_dict_legacy", "training_checkpoint"])
def test_every_form_passes(consumed: dict, case: str, fmt: str) -> None:
    for check in ("map_location", "cuda_tagged"):
        record = consumed[(case, fmt, check)]
        assert record["status"] == "pass", record
        assert "'meta'" in record["detail"] or compat.map_location_meta()
    loads = consumed[(case, fmt, "map_location")]["detail"]
    assert ("mmap" in loads) == (compat.has_mmap() and fmt != "state_dict_legacy")
    tagged = consumed[(case, fmt, "cuda_tagged")]["detail"]
    assert "read back" in tagged and "{'cuda:1': 'cuda:0'} reached the deserializer as cuda:0" in tagged


def test_optimizer_moved_across_devices_resumes(consumed: dict) -> None:
    record = consumed[("batchnorm", "training_checkpoint", "optimizer_device")]
    assert record["status"] == "pass", record
    assert "tensor step(s) on cpu" in record["detail"] and "bit-identical" in record["detail"]


def test_optimizer_without_tensor_steps_skips_saying_why(consumed: dict) -> None:
    record = consumed[("simple", "training_checkpoint", "optimizer_device")]  # SGD keeps no step
    assert record["status"] == "skip" and "no tensor step" in record["detail"], record


def _run_checks(artifacts: Path, tmp_path: Path, names: tuple[str, ...], fmt: str = "state_dict_zip") -> dict:
    """The named checks on the batchnorm artifact of ``fmt``, in this process (so tests can tamper)."""
    found = [a for a in consume_module.collect([artifacts])
             if (a.entry["case"], a.entry["format"]) == ("batchnorm", fmt)]
    with consume_module.CHECKS.only(names):
        out = list(consume_module.consume_artifact(found[0], envmod.describe("cpu"), tmp_path))
    return {r.check: r for r in out if r.status != "skip"}


def test_a_rewrite_that_does_nothing_is_caught(artifacts: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_tags, "retag_pickle", lambda data, location: data)
    found = _run_checks(artifacts, tmp_path, ("cuda_tagged", "optimizer_device"), "training_checkpoint")
    for name in ("cuda_tagged", "optimizer_device"):
        assert found[name].status == "fail", found[name]
        assert "read-back of the cuda:0 copy shows" in found[name].detail


def test_a_rewrite_that_damages_data_is_caught(artifacts: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = cuda_tags._retag_zip

    def flips_a_value(source: Path, target: Path, location: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            damaged = Path(folder) / "damaged.pt"
            state = torch.load(source)
            first = next(k for k, v in state.items() if v.is_floating_point())
            state[first] = state[first] + 1
            torch.save(state, damaged)
            real(damaged, target, location)

    monkeypatch.setattr(cuda_tags, "_retag_zip", flips_a_value)
    found = _run_checks(artifacts, tmp_path, ("cuda_tagged",))
    assert found["cuda_tagged"].status == "fail"
    assert "values differ" in found["cuda_tagged"].detail


def test_a_wrong_error_expectation_is_caught(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not NO_GPU:
        pytest.skip("the default load succeeds on a GPU")
    monkeypatch.setattr(checks, "CUDA_UNAVAILABLE", "a message PyTorch never prints")
    found = _run_checks(artifacts, tmp_path, ("cuda_tagged",))
    assert found["cuda_tagged"].status == "fail"
    assert "raised something else than 'a message PyTorch never prints'" in found["cuda_tagged"].detail


def test_a_form_that_lands_elsewhere_is_caught(artifacts: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if compat.map_location_meta():
        pytest.skip(compat.map_location_meta())
    lying = checks.Form("'meta' claimed as cpu", lambda: "meta", "cpu")
    monkeypatch.setattr(checks, "forms", lambda: [lying])
    found = _run_checks(artifacts, tmp_path, ("map_location",))
    assert found["map_location"].status == "fail"
    assert "on meta, not cpu" in found["map_location"].detail


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
def test_real_cuda_roundtrip(tmp_path: Path) -> None:  # pragma: no cover - runs only on a GPU machine
    """Produce on the GPU; consume GPU→GPU here, and GPU→CPU through the map_location and cuda_tagged checks."""
    results = tmp_path / "r.jsonl"
    result = run_cli("roundtrip", "--device", "cuda", "--case", "simple", "--case", "batchnorm",
                     "--format", "state_dict_zip", "--format", "training_checkpoint", "--results", str(results))
    by_key = index(records(results))
    for check in ("map_location", "cuda_tagged", "optimizer_device", "tensors"):
        record = by_key[("batchnorm", "training_checkpoint", check)]
        assert record["status"] == "pass", record
    assert "cuda:0" in by_key[("batchnorm", "training_checkpoint", "map_location")]["detail"]
    assert result.returncode == 0, result.stdout[-2000:]
