"""The cuda_tagged check's verdicts and the shared comparisons (harness.checks._compare), in process.

The check makes CUDA-tagged copies of an artifact without a GPU and reads them back. On a CPU-only
machine every branch that expects PyTorch's CUDA error runs for real; the branches for a machine
with a GPU run here too, with ``compat.cuda_device_count`` reporting one device whose loads fail or
land on the CPU (a broken driver, a loader that ignores the tags). Loaders are damaged by wrapping
``Context.load``: each damage rewrites the ``map_location`` a load is given, the way a format's loader
could mishandle it, and the check must name exactly what went wrong. Only a pass on a machine whose
loads really land on ``cuda:0`` cannot be produced here (see tests/mutants-equivalent.txt).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

from harness import compat, cuda_tags
from harness.checks import Context, Outcome, _devices
from harness.checks._compare import _short, fingerprint_differences, max_abs_difference, summarize
from harness.formats import FORMATS
from tests.test_checks_fast import context, manifest, run  # noqa: F401 (manifest is the shared session fixture)

CASE, FMT = "tied", "state_dict_zip"
CPU_ONLY = not compat.cuda_device_count()
needs_cpu_only = pytest.mark.skipif(not CPU_ONLY, reason="the default load succeeds on a machine with CUDA")
REMAP = {"cuda:1": "cuda:0"}
#: torch.load's keywords for the full unpickle of the harness's own files
_FULL_UNPICKLE = compat.torch_load_kwargs(False if compat.has_weights_only() else None)
CPU_FORM = _devices.Form("'cpu'", lambda: "cpu", "cpu", "str")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """What the expected messages are built from, read independently of the check."""

    storages: int  # storage records in the file (cuda_tags' read-back)
    distinct: int  # distinct storages among them (each reaches a deserializer once)
    tensors: list[str]  # the manifest's tensor names, sorted
    errors: dict[Any, str]  # map_location -> the error torch.load raises on the cuda:1 copy (cuda:0 copy for None)


@pytest.fixture(scope="module")
def artifact(manifest: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:  # noqa: F811
    ctx = context(manifest, CASE, FMT, tmp_path_factory.mktemp("artifact"))
    folder = tmp_path_factory.mktemp("tagged")
    copies = {}
    for location in ("cuda:0", "cuda:1"):
        copies[location] = folder / f"{location.replace(':', '_')}.pt"
        cuda_tags.retag(ctx.artifact, copies[location], location)
    errors = {}
    for map_location in (None, {"cuda:1": "cpu"}, REMAP, {"cuda:0": "cpu"}):
        path = copies["cuda:0" if map_location is None else "cuda:1"]
        try:
            torch.load(path, map_location=map_location, **_FULL_UNPICKLE)
            errors[_key(map_location)] = ""
        except Exception as exc:
            errors[_key(map_location)] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    records = cuda_tags.storage_locations(ctx.artifact)
    return Artifact(len(records), len({r.key for r in records}), sorted(ctx.entry["fingerprint"]["tensors"]),
                    errors)


def _key(map_location: Any) -> str:
    return repr(map_location)


def _error(artifact: Artifact, map_location: Any) -> str:
    return artifact.errors[_key(map_location)]


def _check(manifest: dict, workdir: Path) -> Outcome:  # noqa: F811
    return run("cuda_tagged", context(manifest, CASE, FMT, workdir))


def _damage_loads(monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[Any], Any]) -> None:
    """Every load of the check goes through ``rewrite(map_location)`` first (a loader's mishandling)."""
    real = Context.load

    def load(self: Context, map_location: Any = None, source: str = "path", path: Optional[Path] = None) -> Any:
        return real(self, rewrite(map_location), source, path)

    monkeypatch.setattr(Context, "load", load)


def _one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that reports one CUDA device; torch itself still has none, so CUDA loads fail or are rerouted."""
    monkeypatch.setattr(compat, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])


def _off_device(artifact: Artifact, device: str, on: str = "cpu") -> str:
    names = artifact.tensors
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "") + f" on {on}, not {device}"


def _failed(*problems: str) -> Outcome:
    return Outcome("fail", "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))


# -- a healthy artifact: the copies are made in the consumer's folder and every expectation is said ---


@needs_cpu_only
def test_pass_says_every_expectation_and_works_in_a_private_folder(manifest: dict, tmp_path: Path,  # noqa: F811
                                                                  artifact: Artifact,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folders: list[Path] = []
    real = _devices.tagged_copy

    def recording(ctx: Context, folder: Path, location: str) -> _devices.TaggedCopy:
        folders.append(folder)
        assert folder.is_dir()
        return real(ctx, folder, location)

    monkeypatch.setattr(_devices, "tagged_copy", recording)
    outcome = _check(manifest, tmp_path)
    labels = [f.label for f in _devices.forms_for(context(manifest, CASE, FMT, tmp_path).fmt)]
    devices = "cpu" if compat.map_location_meta() else "cpu/meta"
    assert outcome == Outcome("pass", (
        f"{artifact.storages} storages retagged cuda:0 and read back; default load raised the CUDA-deserialize "
        f"error; {2 * len(labels) + 1} loads ({', '.join(labels)}) bit-identical onto {devices}; cuda:1 copy: "
        "{'cuda:1': 'cpu'} loads bit-identical, {'cuda:0': 'cpu'} does not match, {'cuda:1': 'cuda:0'} reached "
        "the deserializer as cuda:0 and raised the CUDA error"))
    assert len(folders) == 2 and folders[0] == folders[1]
    assert folders[0].parent == tmp_path and folders[0].name.startswith("cuda-tags-")
    assert not folders[0].exists()  # removed with the copies


def test_a_copy_whose_read_back_shows_the_old_tags_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                         artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_tags, "retag_pickle", lambda data, location: data)
    assert _check(manifest, tmp_path) == Outcome(
        "fail", f"could not make a CUDA-tagged copy: read-back of the cuda:0 copy shows {artifact.storages}× cpu, "
                f"not {artifact.storages} storages on cuda:0")


# -- damaged copies and loaders on a machine without CUDA (the real branches of the mutation run) ---


def _unshared_float(state: dict[str, torch.Tensor]) -> str:
    """The first floating tensor (by name) whose storage no other tensor shares."""
    def storage(tensor: torch.Tensor) -> int:
        return (tensor.untyped_storage() if hasattr(tensor, "untyped_storage") else tensor.storage()).data_ptr()

    owners: dict[int, int] = {}
    for tensor in state.values():
        owners[storage(tensor)] = owners.get(storage(tensor), 0) + 1
    return sorted(k for k, v in state.items() if v.is_floating_point() and owners[storage(v)] == 1)[0]


def _change_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies made with one unshared floating tensor changed in place (the storages keep their keys)."""
    real = cuda_tags._retag_zip

    def changes_a_value(source: Path, target: Path, location: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            damaged = Path(folder) / "damaged.pt"
            state = torch.load(source, **_FULL_UNPICKLE)
            state[_unshared_float(state)].view(-1)[0] += 1
            torch.save(state, damaged)
            real(damaged, target, location)

    monkeypatch.setattr(cuda_tags, "_retag_zip", changes_a_value)


@needs_cpu_only
def test_copies_with_a_changed_value_fail_every_cpu_load_of_them(manifest: dict, tmp_path: Path,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Four problems: three loads of the cuda:0 copy (one form, three sources) and the cuda:1 copy's."""
    ctx = context(manifest, CASE, FMT, tmp_path)
    state = torch.load(ctx.artifact, **_FULL_UNPICKLE)
    name = _unshared_float(state)
    _change_a_value(monkeypatch)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    sources = _devices.sources_for(ctx.fmt)
    assert sources == ["path", "BytesIO", "mmap"]
    assert _check(manifest, tmp_path) == _failed(
        *[f"cuda:0 copy, 'cpu' from {s}: 1 problem(s) over 1 problems: {name}: values differ" for s in sources],
        f"{{'cuda:1': 'cpu'}}: {name}: values differ")


@needs_cpu_only
def test_three_problems_are_all_shown_without_a_count(manifest: dict, tmp_path: Path,  # noqa: F811
                                                      artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch's CUDA error read as something else: the default load, the remap and the unmatched dict."""
    monkeypatch.setattr(_devices, "CUDA_UNAVAILABLE", "a message PyTorch never prints")
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    assert len(_error(artifact, None)) > 200
    assert _check(manifest, tmp_path) == Outcome("fail", "; ".join([
        f"default load raised something else than 'a message PyTorch never prints': {_error(artifact, None)[:200]}",
        f"{{'cuda:1': 'cuda:0'}} without CUDA: expected PyTorch's CUDA error, got {_error(artifact, REMAP)}",
        f"{{'cuda:0': 'cpu'}} must not match a cuda:1 tag; got {_error(artifact, {'cuda:0': 'cpu'})}"]))


@needs_cpu_only
def test_a_default_load_that_succeeds_without_cuda_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _damage_loads(monkeypatch, lambda m: "cpu" if m is None else m)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    assert _check(manifest, tmp_path) == _failed(
        "default load of the cuda:0 copy succeeded without CUDA (expected PyTorch's CUDA error)")


def _drop_dicts(map_location: Any) -> Any:
    return None if isinstance(map_location, dict) else map_location


@needs_cpu_only
def test_a_loader_that_drops_dicts_fails_the_remap(manifest: dict, tmp_path: Path,  # noqa: F811
                                                   artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every dict ignored: {'cuda:1': 'cpu'} raises (PyTorch's long message cut at 200) and the cuda:1 tag
    reaches the deserializers unmapped (the first storage raises)."""
    _damage_loads(monkeypatch, _drop_dicts)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    unmapped = _error(artifact, {"cuda:0": "cpu"})  # the cuda:1 copy loaded without a mapping
    assert len(unmapped) > 200
    assert _check(manifest, tmp_path) == _failed(
        f"{{'cuda:1': 'cpu'}} on the cuda:1 copy raised {unmapped[:200]}",
        "{'cuda:1': 'cuda:0'} reached the deserializers as ['cuda:1']")


def _refuse_remap(map_location: Any) -> Any:
    if map_location == REMAP:
        raise ValueError("refused before reading a storage")
    return map_location


def _remap_to_cpu(map_location: Any) -> Any:
    return "cpu" if map_location == REMAP else map_location


@needs_cpu_only
def test_a_remap_that_never_reaches_a_deserializer_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _damage_loads(monkeypatch, _refuse_remap)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    assert _check(manifest, tmp_path) == _failed(
        "{'cuda:1': 'cuda:0'} reached the deserializers as nothing",
        "{'cuda:1': 'cuda:0'} without CUDA: expected PyTorch's CUDA error, got ValueError: refused before "
        "reading a storage")


@needs_cpu_only
def test_a_remap_that_lands_on_the_cpu_without_cuda_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                          artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    _damage_loads(monkeypatch, _remap_to_cpu)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    assert _check(manifest, tmp_path) == _failed(
        f"{{'cuda:1': 'cuda:0'}} reached the deserializers as {['cpu'] * artifact.distinct}",
        "{'cuda:1': 'cuda:0'} without CUDA: expected PyTorch's CUDA error, got a successful load")


def _match_by_type(map_location: Any) -> Any:
    """A dict's keys matched by device type, ignoring the index: {'cuda:0': 'cpu'} also maps cuda:1."""
    if not isinstance(map_location, dict):
        return map_location
    return {f"{torch.device(k).type}:{i}": v for k, v in map_location.items() for i in range(4)}


@needs_cpu_only
def test_a_dict_that_matches_another_index_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _damage_loads(monkeypatch, _match_by_type)
    monkeypatch.setattr(_devices, "forms", lambda: [CPU_FORM])
    assert _check(manifest, tmp_path) == _failed("{'cuda:0': 'cpu'} must not match a cuda:1 tag; got a CPU load")


# -- a machine that reports a GPU: what the check expects there, with loads that fail or land elsewhere --


def test_a_gpu_whose_loads_raise_fails_each_cuda_load(manifest: dict, tmp_path: Path,  # noqa: F811
                                                      artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CPU_ONLY:
        pytest.skip("loads onto this machine's GPU succeed")
    _one_gpu(monkeypatch)
    assert len(_error(artifact, None)) > 200 and len(_error(artifact, REMAP)) > 200
    assert _check(manifest, tmp_path) == _failed(
        f"default load of the cuda:0 copy on a GPU raised {_error(artifact, None)[:200]}",
        f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {_error(artifact, REMAP)[:200]}",
        f"cuda:1 copy on a 1-GPU machine: expected 'torch.cuda.device_count() is', got "
        f"{_error(artifact, {'cuda:0': 'cpu'})}")


def test_a_gpu_whose_loads_land_on_the_cpu_fails_naming_the_tensors(manifest: dict, tmp_path: Path,  # noqa: F811
                                                                    artifact: Artifact,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not CPU_ONLY:
        pytest.skip("loads onto this machine's GPU succeed")
    _one_gpu(monkeypatch)
    _damage_loads(monkeypatch, lambda m: "cpu" if m is None else _remap_to_cpu(m))
    assert _check(manifest, tmp_path) == _failed(
        f"default load: {_off_device(artifact, 'cuda:0')}",
        f"{{'cuda:1': 'cuda:0'}} reached the deserializers as {['cpu'] * artifact.distinct}",
        f"{{'cuda:1': 'cuda:0'}}: {_off_device(artifact, 'cuda:0')}",
        f"cuda:1 copy on a 1-GPU machine: expected 'torch.cuda.device_count() is', got "
        f"{_error(artifact, {'cuda:0': 'cpu'})}")


def test_a_gpu_where_the_cuda_1_copy_loads_fails(manifest: dict, tmp_path: Path,  # noqa: F811
                                                 artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    """On one GPU {'cuda:0': 'cpu'} leaves the cuda:1 tag, which names a device the machine lacks."""
    if not CPU_ONLY:
        pytest.skip("loads onto this machine's GPU succeed")
    _one_gpu(monkeypatch)
    _damage_loads(monkeypatch, _match_by_type)
    assert _check(manifest, tmp_path) == _failed(
        f"default load of the cuda:0 copy on a GPU raised {_error(artifact, None)[:200]}",
        f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {_error(artifact, REMAP)[:200]}",
        "cuda:1 copy on a 1-GPU machine: expected 'torch.cuda.device_count() is', got a successful load")


def test_a_gpu_where_the_cuda_1_copy_names_a_missing_device_passes_that_step(
        manifest: dict, tmp_path: Path, artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """PyTorch's no-such-device error for {'cuda:0': 'cpu'} is what one GPU must give: no problem from it."""
    if not CPU_ONLY:
        pytest.skip("loads onto this machine's GPU succeed")
    _one_gpu(monkeypatch)

    def no_such_device(map_location: Any) -> Any:
        if map_location == {"cuda:0": "cpu"}:
            raise RuntimeError(f"Attempting to deserialize object on CUDA device 1 but "
                               f"{_devices.CUDA_NO_SUCH_DEVICE} 1.")
        return map_location

    _damage_loads(monkeypatch, no_such_device)
    assert _check(manifest, tmp_path) == _failed(
        f"default load of the cuda:0 copy on a GPU raised {_error(artifact, None)[:200]}",
        f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {_error(artifact, REMAP)[:200]}")


# -- the shared comparisons -----------------------------------------------------------------------


@pytest.mark.parametrize("count, tail", [(4, ""), (5, " (+1 more)"), (6, " (+2 more)")])
def test_summarize_shows_four_problems_and_counts_the_rest(count: int, tail: str) -> None:
    problems = [f"p{i}" for i in range(count)]
    assert summarize(problems, 9) == f"{count} problem(s) over 9 tensors: p0; p1; p2; p3{tail}"
    assert summarize(problems[:2], 3, "loads") == "2 problem(s) over 3 loads: p0; p1"


@pytest.mark.parametrize("count, shown", [(5, "n0, n1, n2, n3, n4"), (6, "n0, n1, n2, n3, n4 (+1)"),
                                          (7, "n0, n1, n2, n3, n4 (+2)")])
def test_names_show_five_and_count_the_rest(count: int, shown: str) -> None:
    expected = {f"n{i}": {"dtype": "float32"} for i in range(count)}
    assert fingerprint_differences(expected, {}) == [f"missing {shown}"]
    assert fingerprint_differences({}, expected) == [f"unexpected {shown}"]


@pytest.mark.parametrize("value, shown", [(None, "None"), ("x" * 40, "x" * 40), ("y" * 41, "y" * 37 + "..."),
                                          (list(range(20)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11...")])
def test_short_keeps_forty_characters(value: Any, shown: str) -> None:
    assert _short(value) == shown
    differences = fingerprint_differences({"t": {"shape": value}}, {"t": {"shape": "other"}}, ("shape",))
    assert differences == [f"t: shape {shown} != other"]


def _tensors(**values: Any) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(value) for name, value in values.items()}


@pytest.mark.parametrize("expected, actual, result", [
    (_tensors(a=[1.0, 2.0]), _tensors(a=[1.0, 2.0]), (0.0, "")),
    (_tensors(a=[1.0]), _tensors(a=[1.5]), (0.5, "a")),  # one element is compared, not skipped
    (_tensors(e=torch.zeros(0).tolist(), a=[1.0]), _tensors(e=torch.zeros(0).tolist(), a=[3.0]), (2.0, "a")),
    (_tensors(a=[5, 1]), _tensors(a=[3, 1]), (2.0, "a")),  # integers: the difference, not the sum
    (_tensors(a=[-5]), _tensors(a=[3]), (8.0, "a")),
    (_tensors(a=[1.0], b=[2.0]), _tensors(a=[2.0], b=[3.0]), (1.0, "a")),  # a tie keeps the first
    (_tensors(a=[1.0], b=[2.0]), _tensors(a=[1.25], b=[3.0]), (1.0, "b")),
    (_tensors(a=[math.nan, 1.0]), _tensors(a=[math.nan, 1.0]), (0.0, "")),  # NaN against NaN
    (_tensors(a=[math.nan, 1.0]), _tensors(a=[1.0, 1.0]), (math.inf, "a")),  # NaN against a number
    (_tensors(a=[1.0, 1.0]), _tensors(a=[1.0, math.nan]), (math.inf, "a")),
    (_tensors(a=[math.inf]), _tensors(a=[math.inf]), (0.0, "")),  # equal infinities
    (_tensors(a=[math.inf]), _tensors(a=[1.0]), (math.inf, "a")),
    (_tensors(a=[-math.inf]), _tensors(a=[math.inf]), (math.inf, "a")),
])
def test_max_abs_difference(expected: dict, actual: dict, result: tuple[float, str]) -> None:
    assert max_abs_difference(expected, actual) == result


@pytest.mark.parametrize("actual, where", [
    ({"a": torch.zeros(2, 1)}, "a: (2,)/torch.float32 vs (2, 1)/torch.float32"),  # the shape alone
    ({"a": torch.zeros(2, dtype=torch.float64)}, "a: (2,)/torch.float32 vs (2,)/torch.float64"),  # the dtype alone
])
def test_max_abs_difference_of_another_shape_or_dtype_is_infinite(actual: dict, where: str) -> None:
    assert max_abs_difference({"a": torch.zeros(2)}, actual) == (math.inf, where)


def test_missing_and_unexpected_names_come_before_the_tensors_that_differ() -> None:
    expected = {"a": {"dtype": "float32"}, "gone": {"dtype": "float32"}, "z": {"dtype": "float32", "hash": "1"}}
    actual = {"a": {"dtype": "float16"}, "new": {"dtype": "float32"}, "z": {"dtype": "float32", "hash": "2"}}
    assert fingerprint_differences(expected, actual) == [
        "missing gone", "unexpected new", "a: dtype float32 != float16", "z: values differ"]


def test_map_location_applies_to_state_formats_of_at_most_64_mb() -> None:
    state = FORMATS.get("state_dict_zip")
    assert _devices.MAX_BYTES == 64 * 2**20
    assert _devices.applies(state, {}) is None and _devices.applies(state, {"file_bytes": _devices.MAX_BYTES}) is None
    assert _devices.applies(state, {"file_bytes": _devices.MAX_BYTES + 1}) == (
        "64 MB: every form is checked on the artifacts under 64 MB")
    assert _devices.applies(state, {"file_bytes": 528 * 2**20}) == (
        "528 MB: every form is checked on the artifacts under 64 MB")
    assert _devices.applies(FORMATS.get("numpy_npz"), {}) == "numpy_npz's loader takes no map_location form"
    assert _devices.applies(FORMATS.get("whole_model_zip"), {}) == (
        "whole_model_zip holds a module or program; map_location is checked on the formats that hold state")
