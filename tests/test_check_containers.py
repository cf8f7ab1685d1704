"""``check --torch`` judges each artifact by its container: sharded safetensors with safetensors, DCP with
its own reader (trusted folders only), ONNX with onnx's checker and onnxruntime where installed, npz with
numpy; torch.load only for torch pickles. An ``--import`` failure is the verdict of the files that need
the user's code, not the end of the run.

The artifacts are made here with the harness's own formats; the worker's ``check_file`` runs in process
(the same code the release's interpreter runs), the CLI once at the end (slow).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import compat, containers
from harness.case import CASES, prepare
from harness.checkfile import request_item
from harness.checkfile import worker as worker_module
from harness.checkfile.verdicts import judge
from harness.formats import FORMATS
from harness.inspect import inspect_file
from tests.conftest import run_cli

RELEASE = torch.__version__.split("+", 1)[0]
ONNX_MISSING = compat.onnx_unavailable()
DCP_MISSING = compat.dcp_format_utils() or compat.dcp_unavailable()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One artifact per container the harness writes that is not a torch pickle, plus a state_dict."""
    folder = tmp_path_factory.mktemp("containers")
    prepared = prepare(CASES.get("simple"))
    made = {}
    names = ["sharded_safetensors", "state_dict_zip", "numpy_npz"]
    names += [] if DCP_MISSING else ["dcp"]
    names += [] if ONNX_MISSING else ["onnx"]
    for name in names:
        fmt = FORMATS.get(name)
        made[name] = folder / f"{name}{fmt.suffix}"
        fmt.save(fmt.payload(prepared), made[name])
    return made


class CountedLoads:
    """Counts ``torch.load`` calls while a check runs (none may reach a file that is not a torch pickle)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[Any] = []
        original = torch.load

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(args[:1])
            return original(*args, **kwargs)

        monkeypatch.setattr(torch, "load", counted)


def run_check(path: Path, allow_unsafe: bool = False, compat_module: Any = None,
              import_failed: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
    """The worker's result and the verdict for one file, in this process's torch."""
    inspection = inspect_file(path)
    result = worker_module.check_file(request_item(inspection), compat_module or worker_module.load_compat(),
                                      allow_unsafe, import_failed)
    result["torch"] = torch.__version__
    return result, judge(inspection, RELEASE, result)


def test_every_container_names_its_loader_and_only_pickles_are_pickled() -> None:
    from harness.checkfile import loaders

    for container in containers.CONTAINERS:
        assert container.loader is None or container.loader in loaders.LOADERS, container.name
        assert container.pickled == (container.loader == "torch.load"), container.name
    assert containers.get("tar").loader is None


def test_sharded_safetensors_is_read_with_safetensors(artifacts: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    loads = CountedLoads(monkeypatch)
    result, verdict = run_check(artifacts["sharded_safetensors"])
    assert list(result["loads"]) == ["safetensors.load_file"], result["loads"]
    assert verdict.status == "ok" and verdict.headline == "loads", verdict
    assert not loads.calls, "torch.load reached a safetensors folder"


def test_a_stale_shard_index_fails_the_load_naming_the_tensor(artifacts: dict[str, Path], tmp_path: Path) -> None:
    from harness.checkfile import loaders
    from harness.containers import sharded

    folder = tmp_path / "stale"
    folder.mkdir()
    for file in artifacts["sharded_safetensors"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    index = json.loads((folder / sharded.INDEX_NAME).read_text())
    name, shard = next(iter(index["weight_map"].items()))
    index["weight_map"][name] = next(v for v in index["weight_map"].values() if v != shard)
    (folder / sharded.INDEX_NAME).write_text(json.dumps(index))
    import safetensors.torch

    with pytest.raises(KeyError, match=name.replace(".", r"\.")):
        loaders.load_shards(safetensors.torch, folder, sharded.INDEX_NAME, "cpu")
    result, verdict = run_check(folder)
    assert verdict.status == "fail" and result["loads"]["safetensors.load_file"]["status"] == "fail", result
    assert name in result["loads"]["safetensors.load_file"]["message"]


def test_npz_is_read_with_numpy_without_pickles(artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    loads = CountedLoads(monkeypatch)
    inspection = inspect_file(artifacts["numpy_npz"])
    assert inspection.container == "npz" and inspection.unsafe_globals == [], inspection
    result, verdict = run_check(artifacts["numpy_npz"])
    assert list(result["loads"]) == ["numpy.load"] and verdict.status == "ok", result
    assert not loads.calls


def test_a_torch_pickle_still_gets_the_three_torch_loads(artifacts: dict[str, Path]) -> None:
    result, verdict = run_check(artifacts["state_dict_zip"])
    assert set(result["loads"]) == {"default", "weights_only", "unsafe"} and verdict.status == "ok", result
    assert result["loads"]["unsafe"]["status"] == "skip"


@pytest.mark.skipif(bool(DCP_MISSING), reason=str(DCP_MISSING))
def test_dcp_is_read_with_its_own_reader_and_only_when_trusted(artifacts: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    loads = CountedLoads(monkeypatch)
    result, verdict = run_check(artifacts["dcp"])
    dcp = result["loads"]["dcp.load"]
    assert dcp["status"] == "skip" and "--allow-unsafe" in dcp["message"]
    assert verdict.status == "fail" and verdict.headline.startswith("not tried (DCP's reader unpickles"), verdict
    assert not loads.calls, "an untrusted DCP folder was read"
    result, verdict = run_check(artifacts["dcp"], allow_unsafe=True)
    assert list(result["loads"]) == ["dcp.load"] and verdict.status == "ok", result
    (artifacts["dcp"].parent / "dcp-broken").mkdir()
    for file in artifacts["dcp"].iterdir():
        if file.suffix != ".distcp":
            (artifacts["dcp"].parent / "dcp-broken" / file.name).write_bytes(file.read_bytes())
    (artifacts["dcp"].parent / "dcp-broken" / "__0_0.distcp").write_bytes(b"\0" * 16)
    result, verdict = run_check(artifacts["dcp"].parent / "dcp-broken", allow_unsafe=True)
    assert result["loads"]["dcp.load"]["status"] == "fail" and verdict.status == "fail", result


@pytest.mark.skipif(bool(ONNX_MISSING), reason=str(ONNX_MISSING))
def test_onnx_is_read_with_the_checker_and_onnxruntime(artifacts: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads = CountedLoads(monkeypatch)
    result, verdict = run_check(artifacts["onnx"])
    assert {m: r["status"] for m, r in result["loads"].items()} == {"onnx.checker": "pass", "onnxruntime": "pass"}
    assert verdict.status == "ok" and not loads.calls
    import onnx

    model = onnx.load(str(artifacts["onnx"]))
    model.graph.node[0].op_type = "NoSuchOperator"
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    result, verdict = run_check(damaged)
    assert result["loads"]["onnx.checker"]["status"] == "fail" and result["loads"]["onnxruntime"]["status"] == "fail"
    assert verdict.status == "fail" and verdict.headline == "does not load" and not loads.calls


@pytest.mark.skipif(bool(ONNX_MISSING), reason=str(ONNX_MISSING))
def test_onnx_without_the_packages_is_not_tried_with_the_reason(artifacts: dict[str, Path]) -> None:
    real = worker_module.load_compat()

    class WithoutOnnx:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def import_optional(name: str) -> tuple[Any, Any]:
            if name.split(".")[0] in ("onnx", "onnxruntime"):
                return None, f"{name} does not import here: ModuleNotFoundError: No module named '{name}'"
            return real.import_optional(name)

    result, verdict = run_check(artifacts["onnx"], compat_module=WithoutOnnx())
    assert all(r["status"] == "skip" for r in result["loads"].values()), result
    assert verdict.status == "fail" and verdict.headline.startswith(
        f"not tried (onnx is not installed in torch {torch.__version__}'s environment"), verdict.headline


def _whole_model(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (folder / "gw_usermodels.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    import gw_usermodels  # noqa: F401 - the class the pickle names

    path = folder / "whole.pt"
    torch.save(sys.modules["gw_usermodels"].Net(2, 2), path)
    monkeypatch.delitem(sys.modules, "gw_usermodels")
    return path


def test_an_import_failure_is_the_verdict_of_the_files_that_need_user_code(
        artifacts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _whole_model(tmp_path, monkeypatch)
    failed = {"gw_missing": "ModuleNotFoundError: No module named 'gw_missing'"}
    result, verdict = run_check(whole, import_failed=failed)
    expected = f"not tried: --import gw_missing failed in torch {torch.__version__}: ModuleNotFoundError"
    assert verdict.headline.startswith(expected) and verdict.status == "fail", verdict.headline
    assert all(r["status"] == "skip" for r in result["loads"].values())
    result, verdict = run_check(artifacts["state_dict_zip"], import_failed=failed)
    assert verdict.status == "ok" and "import_error" not in result, "a state_dict needs no user code"
    _, without_failure = run_check(whole)
    assert not without_failure.headline.startswith("not tried: --import")


def test_check_cli_keeps_going_after_an_import_failure(artifacts: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _whole_model(tmp_path, monkeypatch)
    done = run_cli("check", "--json", str(whole), str(artifacts["state_dict_zip"]), "--torch", RELEASE,
                   "--import", "gw_missing_module")
    assert done.returncode == 1, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    headlines = [r["verdicts"][RELEASE]["headline"] for r in reports]
    assert headlines[0].startswith(f"not tried: --import gw_missing_module failed in torch {RELEASE}"), headlines
    assert "No module named 'gw_missing_module'" in headlines[0] and headlines[1] == "loads", headlines


def test_inspection_corrects_what_it_misread_before_containers_decided(tmp_path: Path) -> None:
    """A legacy stream pickled with protocol 4 was 'a Python pickle not written by torch.save'; a tar
    'unknown binary data'. Both are what harness.containers says they are now; the tar gets no loader."""
    import tarfile

    legacy = tmp_path / "p4.pt"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    found = inspect_file(legacy)
    assert (found.container, found.tensors, found.bytes) == ("legacy", 1, 12), found
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(legacy, arcname="index.json")
    found = inspect_file(archive)
    assert found.container == "tar" and found.unsafe_globals is None, found  # its members may be pickles
    result, verdict = run_check(archive)
    assert list(result["loads"]) == ["load"] and verdict.headline.startswith("not tried (no loader"), result


def test_only_files_naming_code_from_outside_torch_wait_on_an_import() -> None:
    from harness.checkfile import needs_imports
    from harness.inspect import Inspection

    def inspection(*suspicious: str) -> Inspection:
        return Inspection("f", 1, "dcp", globals=list(suspicious), suspicious_globals=list(suspicious))

    assert not needs_imports(inspection("torch.distributed.checkpoint.metadata.Metadata"))  # a DCP folder's own
    assert needs_imports(inspection("mypkg.models.Net"))
    assert needs_imports(Inspection("f", 1, "zip", globals=["__main__.Net"]))


def test_items_built_without_a_loader_keep_the_label_loaders(artifacts: dict[str, Path]) -> None:
    """harness.upgrade builds worker items itself (path, container label, devices, broken): they keep working,
    and the label table agrees with what harness.containers declares."""
    for label, loader in worker_module.BY_LABEL.items():
        container = containers.labelled(label)
        assert container is not None and container.loader == loader, label
    item = {"path": str(artifacts["state_dict_zip"]), "container": "zip", "devices": ["cpu"], "broken": False}
    result = worker_module.check_file(item, worker_module.load_compat(), False)
    assert set(result["loads"]) == {"default", "weights_only", "unsafe"}, result
    assert result["loads"]["weights_only"]["status"] == "pass"
