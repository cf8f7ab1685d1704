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


@pytest.mark.slow
def test_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli("consume", str(tmp_path / "empty"), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(tmp_path / "empty"), "no manifest.json")


@pytest.mark.slow
def test_missing_folder(tmp_path: Path) -> None:
    result = run_cli("consume", str(tmp_path / "nope"), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, "no such folder")


@pytest.mark.slow
def test_manifest_that_does_not_parse(small_artifacts: Path, tmp_path: Path) -> None:
    manifest = env_dir(small_artifacts) / "manifest.json"
    manifest.write_text(manifest.read_text()[:-20])
    before = tree_state(small_artifacts)
    result = run_cli("consume", str(small_artifacts), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(manifest), "does not parse")
    assert tree_state(small_artifacts) == before


@pytest.mark.slow
def test_manifest_of_another_kind(small_artifacts: Path, tmp_path: Path) -> None:
    manifest = env_dir(small_artifacts) / "manifest.json"
    manifest.write_text(json.dumps({"hello": "world"}))
    result = run_cli("consume", str(small_artifacts), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(manifest), "not a checkpoint-harness manifest")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
@pytest.mark.slow
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


@pytest.mark.slow
def test_unknown_case_name_is_one_line(tmp_path: Path) -> None:
    result = run_cli("produce", "--out", str(tmp_path), "--case", "no_such_case")
    assert_one_line_error(result, "unknown case 'no_such_case'", "simple")


@pytest.mark.slow
def test_plugin_that_does_not_import(tmp_path: Path) -> None:
    result = run_cli("produce", "--out", str(tmp_path), "--plugin", "no.such.module")
    assert_one_line_error(result, "plugin 'no.such.module' does not import")


@pytest.mark.slow
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
@pytest.mark.slow
def test_device_torch_does_not_offer_is_one_line(tmp_path: Path, command: str, device: str, needle: str) -> None:
    args = {"produce": ["--out", str(tmp_path)], "consume": [str(tmp_path), "--results", str(tmp_path / "r.jsonl")],
            "roundtrip": []}[command]
    result = run_cli(command, *args, "--device", device)
    assert_one_line_error(result, f"--device {device!r}", needle)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
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
@pytest.mark.slow
def test_a_file_where_an_artifacts_folder_belongs(tmp_path: Path, content: bytes) -> None:
    stray = tmp_path / "model.pt"
    stray.write_bytes(content)
    result = run_cli("consume", str(stray), "--results", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, str(stray), "not a folder")
    assert stray.read_bytes() == content


# ==========================================================================================
# The bad-input table: every subcommand, in-process (cli.main), each input one line + exit 2
# (or a finding + exit 1), never a traceback. Subprocess runs of a sample are at the end.
# ==========================================================================================

import dataclasses  # noqa: E402
import os  # noqa: E402
from typing import Any, Callable  # noqa: E402


@dataclasses.dataclass
class World:
    """The files one table row runs against (a fresh copy per row)."""

    tmp: Path
    art: Path  # an artifacts folder written by produce (simple × state_dict_zip, whole_model_legacy)
    env: Path  # its one environment folder
    results: Path  # a valid results file
    keep: Path  # a file that must survive every row untouched

    @property
    def manifest(self) -> Path:
        return self.env / "manifest.json"

    def document(self) -> dict:
        return json.loads(self.manifest.read_text())

    def write_manifest(self, document: Any) -> None:
        self.manifest.write_text(document if isinstance(document, str) else json.dumps(document))

    def write_results(self, *lines: str, name: str = "bad.jsonl") -> Path:
        path = self.tmp / name
        path.write_text("".join(line + "\n" for line in lines))
        return path


@pytest.fixture(scope="module")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Produced once per module, in-process; each row gets a copy."""
    from harness.produce import produce

    root = tmp_path_factory.mktemp("table")
    produce(root / "art", ["simple"], ["state_dict_zip", "whole_model_legacy"])
    good = {"producer": BRIEF, "consumer": BRIEF, "case": "simple", "format": "state_dict_zip", "check": "tensors",
            "load_mode": "default", "status": "pass", "detail": "", "duration_s": 0.1}
    (root / "r.jsonl").write_text(json.dumps(good) + "\n")
    (root / "keep.jsonl").write_text("precious line\n")
    return root


BRIEF = {"torch": "2.13.0", "python": "3.11.7", "device": "cpu", "default_weights_only": True}
GOOD_RECORD = {"producer": BRIEF, "consumer": BRIEF, "case": "simple", "format": "state_dict_zip", "check": "tensors",
               "load_mode": "default", "status": "pass", "detail": "", "duration_s": 0.1}


@pytest.fixture()
def world(world_template: Path, tmp_path: Path) -> World:
    shutil.copytree(world_template, tmp_path / "w")
    root = tmp_path / "w"
    env = next(p for p in (root / "art").iterdir() if p.is_dir() and not p.name.startswith("."))
    return World(root, root / "art", env, root / "r.jsonl", root / "keep.jsonl")


Row = tuple[str, Callable[[World], list[str]], frozenset]
ROWS: list[Row] = []
BAD, BAD_OR_FINDING = frozenset({2}), frozenset({1, 2})


def row(ident: str, codes: frozenset = BAD) -> Callable[[Callable[[World], list[str]]], None]:
    def add(build: Callable[[World], list[str]]) -> None:
        ROWS.append((ident, build, codes))
    return add


# --- manifests: through consume and corrupt (both read every manifest before anything else) ----


def _ok(document: dict) -> dict:
    return next(e for e in document["entries"] if e["status"] == "ok")


def _set(path: str, value: Any) -> Callable[[dict], Any]:
    """A damage that sets ``a.b.0.c`` (``@ok`` is the first ok entry, ``@case`` the built case section)."""
    def damage(document: dict) -> Any:
        parts = path.split(".")
        target: Any = document
        for part in parts[:-1]:
            target = (_ok(target) if part == "@ok" else next(iter(target["cases"].values())) if part == "@case"
                      else target[int(part)] if isinstance(target, list) else target[part])
        last = parts[-1]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
        return document
    return damage


DELETE = object()
MANIFEST_DAMAGES: dict[str, Callable[[dict], Any]] = {
    "entries=5": _set("entries", 5), "entries=[5]": _set("entries", [5]), "entries=[{}]": _set("entries", [{}]),
    "entries=null": _set("entries", None), "entries=str": _set("entries", "x"), "entries=[[]]": _set("entries", [[]]),
    "entries=[status-only]": _set("entries", [{"status": "ok"}]), "no entries": _set("entries", DELETE),
    "env=5": _set("env", 5), "env=str": _set("env", "x"), "env={}": _set("env", {}), "no env": _set("env", DELETE),
    "env.torch=int": _set("env.torch", 5), "env.device=null": _set("env.device", None),
    "env_id=5": _set("env_id", 5), "env_id=empty": _set("env_id", ""), "env_id=../x": _set("env_id", "../x"),
    "env_id=markup": _set("env_id", "[/x]"), "no env_id": _set("env_id", DELETE),
    "cases=[]": _set("cases", []), "cases=5": _set("cases", 5), "no cases": _set("cases", DELETE),
    "case section=5": lambda d: {**d, "cases": {k: 5 for k in d["cases"]}},
    "case section={}": lambda d: {**d, "cases": {k: {} for k in d["cases"]}},
    "atol=str": _set("@case.atol", "x"), "steps=-1": _set("@case.steps", -1),
    "outputs_file=5": _set("@case.outputs_file", 5), "case outputs=[]": _set("@case.outputs", []),
    "case=int": _set("@ok.case", 7), "file=int": _set("@ok.file", 7),
    "file=empty": _set("@ok.file", ""), "no file": _set("@ok.file", DELETE),
    "no file_bytes": _set("@ok.file_bytes", DELETE), "file_bytes=-15": _set("@ok.file_bytes", -15),
    "file_bytes=str": _set("@ok.file_bytes", "12"), "file_bytes=float": _set("@ok.file_bytes", 1.5),
    "file_hash=5": _set("@ok.file_hash", 5), "no file_hash": _set("@ok.file_hash", DELETE),
    "fingerprint=5": _set("@ok.fingerprint", 5), "fingerprint={}": _set("@ok.fingerprint", {}),
    "tensors=[]": _set("@ok.fingerprint.tensors", []),
    "tensor=5": _set("@ok.fingerprint.tensors", {"w": 5}),
    "shape=-1": lambda d: _set("@ok.fingerprint.tensors", {
        k: {**v, "shape": [-1]} for k, v in _ok(d)["fingerprint"]["tensors"].items()})(d),
    "modes=str-values": _set("@ok.modes", {"a": "x"}), "save_warnings=str": _set("@ok.save_warnings", "x"),
    "status=5": _set("@ok.status", 5), "status=null": _set("@ok.status", None),
    "status=great": _set("@ok.status", "great"), "format=5": _set("@ok.format", 5),
    "stored_tensor_bytes=null": _set("@ok.stored_tensor_bytes", None),
    "entry of unbuilt case": _set("@ok.case", "nope"),
    "schema=2": _set("schema", 2), "schema=str": _set("schema", "1"), "schema=null": _set("schema", None),
    "no schema": _set("schema", DELETE),
    "top-level list": lambda d: [d], "top-level string": lambda d: "x", "top-level null": lambda d: None,
    "top-level number": lambda d: 5,
}
MANIFEST_TEXTS: dict[str, str] = {
    "empty file": "", "whitespace": "  \n", "truncated": '{"schema": 1, "env": ', "not json": "hello",
    "deep arrays": "[" * 100_000 + "]" * 100_000, "deep objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "huge int": '{"schema": ' + "9" * 5000 + "}", "nul bytes": "\x00\x00\x00", "markup": "[/x] [bold]",
    "escape codes": "\x1b[2J\x1b[8m",
}


def _manifest_rows(command: str) -> None:
    extra = {"consume": ["--results", "{tmp}/out.jsonl"], "corrupt": ["--results", "{tmp}/out.jsonl", "--count", "1"]}
    for name, damage in MANIFEST_DAMAGES.items():
        def build(w: World, damage: Callable = damage) -> list[str]:
            w.write_manifest(damage(w.document()))
            return [command, str(w.art), *(a.format(tmp=w.tmp) for a in extra[command])]
        row(f"{command}-manifest-{name}")(build)
    for name, text in MANIFEST_TEXTS.items():
        def build_text(w: World, text: str = text) -> list[str]:
            w.write_manifest(text)
            return [command, str(w.art), *(a.format(tmp=w.tmp) for a in extra[command])]
        row(f"{command}-manifest-{name}")(build_text)

    def invalid_utf8(w: World) -> list[str]:
        w.manifest.write_bytes(b"\xff\xfe\x00garbage\x80")
        return [command, str(w.art), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-manifest-invalid-utf8")(invalid_utf8)

    def manifest_folder(w: World) -> list[str]:
        w.manifest.unlink()
        w.manifest.mkdir()
        return [command, str(w.art), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-manifest-is-a-folder")(manifest_folder)

    def manifest_fifo(w: World) -> list[str]:
        w.manifest.unlink()
        os.mkfifo(w.manifest)
        return [command, str(w.art), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-manifest-is-a-fifo")(manifest_fifo)


_manifest_rows("consume")
_manifest_rows("corrupt")


# --- results files: through summary and report -------------------------------------------------

RECORD_LINES: dict[str, list[str]] = {
    "list": ["[1, 2]"], "number": ["5"], "string": ['"x"'], "null": ["null"], "true": ["true"], "{}": ["{}"],
    "no producer": [json.dumps({k: v for k, v in GOOD_RECORD.items() if k != "producer"})],
    "producer string": [json.dumps({**GOOD_RECORD, "producer": "x"})],
    "producer {}": [json.dumps({**GOOD_RECORD, "producer": {}})],
    "producer no torch": [json.dumps({**GOOD_RECORD, "producer": {"python": "3", "device": "cpu"}})],
    "consumer 5": [json.dumps({**GOOD_RECORD, "consumer": 5})],
    "detail null": [json.dumps({**GOOD_RECORD, "detail": None})],
    "detail 5": [json.dumps({**GOOD_RECORD, "detail": 5})],
    "status unknown": [json.dumps({**GOOD_RECORD, "status": "great"})],
    "status null": [json.dumps({**GOOD_RECORD, "status": None})],
    "status 5": [json.dumps({**GOOD_RECORD, "status": 5})],
    "case 5": [json.dumps({**GOOD_RECORD, "case": 5})], "format null": [json.dumps({**GOOD_RECORD, "format": None})],
    "check list": [json.dumps({**GOOD_RECORD, "check": []})],
    "load_mode dict": [json.dumps({**GOOD_RECORD, "load_mode": {}})],
    "duration str": [json.dumps({**GOOD_RECORD, "duration_s": "slow"})],
    "duration null": [json.dumps({**GOOD_RECORD, "duration_s": None})],
    "warnings str": [json.dumps({**GOOD_RECORD, "warnings": "x"})],
    "warnings [5]": [json.dumps({**GOOD_RECORD, "warnings": [5]})],
    "expected str": [json.dumps({**GOOD_RECORD, "expected": "x"})],
    "problem 5": [json.dumps({**GOOD_RECORD, "problem": 5})],
    "no status": [json.dumps({k: v for k, v in GOOD_RECORD.items() if k != "status"})],
    "good then bad": [json.dumps(GOOD_RECORD), "[]"],
    "not json": ["{not json"], "deep": ["[" * 100_000 + "]" * 100_000],
}


def _results_rows(command: str) -> None:
    extra = {"summary": [], "report": ["--out", "{tmp}/reports"]}
    for name, lines in RECORD_LINES.items():
        def build(w: World, lines: list[str] = lines) -> list[str]:
            return [command, str(w.write_results(*lines)), *(a.format(tmp=w.tmp) for a in extra[command])]
        row(f"{command}-record-{name}")(build)

    def partial(w: World) -> list[str]:
        path = w.tmp / "cut.jsonl"
        path.write_text(json.dumps(GOOD_RECORD) + "\n" + json.dumps(GOOD_RECORD)[:30])
        return [command, str(path), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-record-partial-last-line")(partial)

    def binary(w: World) -> list[str]:
        path = w.tmp / "bin.jsonl"
        path.write_bytes(b"\xff\xfe\x00\x80\n")
        return [command, str(path), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-record-invalid-utf8")(binary)

    for name, target in {"missing": "{tmp}/nope.jsonl", "folder": "{tmp}", "dev-null": "/dev/null",
                         "proc": "/proc/self/status"}.items():
        def build_path(w: World, target: str = target) -> list[str]:
            return [command, target.format(tmp=w.tmp), *(a.format(tmp=w.tmp) for a in extra[command])]
        row(f"{command}-results-{name}")(build_path)

    def fifo(w: World) -> list[str]:
        os.mkfifo(w.tmp / "fifo.jsonl")
        return [command, str(w.tmp / "fifo.jsonl"), *(a.format(tmp=w.tmp) for a in extra[command])]
    row(f"{command}-results-fifo")(fifo)

    for name, text in {"bad toml": "[[expected", "expected=5": "expected = 5", "expected=[5]": "expected = [5]",
                       "entry without reason": '[[expected]]\nid = "x"\noutcome = "fail"\n',
                       "bad range": '[[expected]]\nid = "x"\nreason = "r"\noutcome = "fail"\nconsumer_torch = "><"\n'
                       }.items():
        def build_expect(w: World, text: str = text) -> list[str]:
            (w.tmp / "e.toml").write_text(text)
            return [command, str(w.results), "--expectations", str(w.tmp / "e.toml"),
                    *(a.format(tmp=w.tmp) for a in extra[command])]
        row(f"{command}-expectations-{name}")(build_expect)
    row(f"{command}-expectations-missing")(
        lambda w: [command, str(w.results), "--expectations", str(w.tmp / "nope.toml"),
                   *(a.format(tmp=w.tmp) for a in extra[command])])
    row(f"{command}-expectations-folder")(
        lambda w: [command, str(w.results), "--expectations", str(w.tmp),
                   *(a.format(tmp=w.tmp) for a in extra[command])])


_results_rows("summary")
_results_rows("report")
for _name, _target in {"a file": "{keep}", "under proc": "/proc/self/reports", "under a file": "{keep}/sub"}.items():
    row(f"report-out-{_name}")(lambda w, t=_target: ["report", str(w.results), "--out",
                                                      t.format(keep=w.keep, tmp=w.tmp)])


# --- output paths of consume / corrupt / canary / roundtrip; produce --out ---------------------

OUTPUT_FILES = {"folder": "{tmp}", "under proc": "/proc/self/r.jsonl", "dev null": "/dev/null",
                "under a file": "{keep}/r.jsonl", "env manifest": "{env}/manifest.json",
                "inside env": "{env}/r.jsonl", "inside artifacts": "{art}/r.jsonl", "sys": "/sys/r.jsonl"}
for _name, _target in OUTPUT_FILES.items():
    def _fmt(w: World, t: str) -> str:
        return t.format(tmp=w.tmp, keep=w.keep, env=w.env, art=w.art)
    row(f"consume-results-{_name}")(lambda w, t=_target: ["consume", str(w.art), "--results", _fmt(w, t)])
    row(f"corrupt-results-{_name}")(lambda w, t=_target: ["corrupt", str(w.art), "--results", _fmt(w, t),
                                                           "--count", "1"])
    if "env" not in _name and "artifacts" not in _name:
        row(f"canary-results-{_name}")(lambda w, t=_target: ["canary", "--results", _fmt(w, t)])
        row(f"roundtrip-results-{_name}")(lambda w, t=_target: ["roundtrip", "--case", "simple", "--format",
                                                                 "state_dict_zip", "--results", _fmt(w, t)])

for _name, _target in {"a file": "{keep}", "under proc": "/proc/self/out", "under a file": "{keep}/sub",
                       "sys": "/sys/out"}.items():
    row(f"produce-out-{_name}")(lambda w, t=_target: ["produce", "--out", t.format(keep=w.keep), "--case", "simple"])


def _user_folder(w: World) -> list[str]:
    shutil.rmtree(w.env)
    w.env.mkdir()
    (w.env / "notes.txt").write_text("mine")
    return ["produce", "--out", str(w.art), "--case", "simple", "--format", "state_dict_zip", "--replace"]


def _user_folder_no_replace(w: World) -> list[str]:
    _user_folder(w)
    return ["produce", "--out", str(w.art), "--case", "lenet", "--format", "state_dict_zip"]


def _linked_env(w: World) -> list[str]:
    elsewhere = w.tmp / "elsewhere"
    w.env.rename(elsewhere)
    w.env.symlink_to(elsewhere)
    return ["produce", "--out", str(w.art), "--case", "simple", "--format", "state_dict_zip", "--replace"]


def _env_is_file(w: World) -> list[str]:
    shutil.rmtree(w.env)
    w.env.write_text("x")
    return ["produce", "--out", str(w.art), "--case", "simple", "--format", "state_dict_zip", "--replace"]


def _case_held(w: World) -> list[str]:
    return ["produce", "--out", str(w.art), "--case", "simple", "--format", "state_dict_zip"]


def _env_bad_manifest(w: World) -> list[str]:
    (w.env / ".ckpt-harness-env").unlink()
    w.write_manifest("[]")
    return ["produce", "--out", str(w.art), "--case", "lenet", "--format", "state_dict_zip", "--replace"]


for _name, _build in {"user folder --replace": _user_folder, "user folder": _user_folder_no_replace,
                      "symlinked env folder": _linked_env, "env folder is a file": _env_is_file,
                      "case already held": _case_held, "unmarked env with a bad manifest": _env_bad_manifest}.items():
    row(f"produce-{_name}")(_build)


# --- arguments and names, every subcommand -------------------------------------------------

ARGUMENTS: dict[str, Callable[[World], list[str]]] = {
    "no command": lambda w: [], "unknown command": lambda w: ["nosuch"],
    "produce no --out": lambda w: ["produce"], "produce unknown case": lambda w: ["produce", "--out", str(w.tmp / "o"),
                                                                                  "--case", "nosuch"],
    "produce unknown format": lambda w: ["produce", "--out", str(w.tmp / "o"), "--format", "nosuch"],
    "produce case markup": lambda w: ["produce", "--out", str(w.tmp / "o"), "--case", "[/x]"],
    "produce device gpu0": lambda w: ["produce", "--out", str(w.tmp / "o"), "--device", "gpu0"],
    "produce device mps": lambda w: ["produce", "--out", str(w.tmp / "o"), "--device", "mps"],
    "produce bad plugin": lambda w: ["produce", "--out", str(w.tmp / "o"), "--plugin", "no.such.module"],
    "consume no args": lambda w: ["consume"], "consume no --results": lambda w: ["consume", str(w.art)],
    "consume nonexistent": lambda w: ["consume", "/nonexistent", "--results", str(w.keep)],
    "consume a file": lambda w: ["consume", str(w.keep), "--results", str(w.tmp / "o.jsonl")],
    "consume empty folder": lambda w: ["consume", str(_mkdir(w.tmp / "empty")), "--results", str(w.tmp / "o.jsonl")],
    "consume too deep": lambda w: ["consume", str(_too_deep(w)), "--results", str(w.tmp / "o.jsonl")],
    "consume device": lambda w: ["consume", str(w.art), "--results", str(w.tmp / "o.jsonl"), "--device", "tpu"],
    "consume bad plugin": lambda w: ["consume", str(w.art), "--results", str(w.tmp / "o.jsonl"), "--plugin", "x.y"],
    "consume bad expectations": lambda w: ["consume", str(w.art), "--results", str(w.tmp / "o.jsonl"),
                                           "--expectations", str(w.keep)],
    "consume missing artifact": lambda w: ["consume", str(_delete_artifact(w)), "--results", str(w.keep)],
    "consume flipped artifact": lambda w: ["consume", str(_flip_artifact(w)), "--results", str(w.keep)],
    "summary no args": lambda w: ["summary"], "report no args": lambda w: ["report"],
    "roundtrip unknown case": lambda w: ["roundtrip", "--case", "nosuch"],
    "roundtrip unknown format": lambda w: ["roundtrip", "--format", "nosuch"],
    "roundtrip device": lambda w: ["roundtrip", "--device", "gpu0"],
    "corrupt no args": lambda w: ["corrupt"], "corrupt count abc": lambda w: ["corrupt", str(w.art), "--results",
                                                                              str(w.tmp / "o"), "--count", "abc"],
    "corrupt count -1": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--count", "-1"],
    "corrupt workers 0": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--workers", "0"],
    "corrupt timeout 0": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--timeout", "0"],
    "corrupt memory 0": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--memory-mb", "0"],
    "corrupt profile": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--profile", "huge"],
    "corrupt unknown format": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--format", "nosuch"],
    "corrupt nonexistent": lambda w: ["corrupt", "/nonexistent", "--results", str(w.keep)],
    "corrupt max-bytes 1": lambda w: ["corrupt", str(w.art), "--results", str(w.tmp / "o"), "--max-bytes", "1"],
    "canary no --results": lambda w: ["canary"],
    "canary timeout str": lambda w: ["canary", "--results", str(w.tmp / "o"), "--timeout", "soon"],
    "check no files": lambda w: ["check"], "check missing": lambda w: ["check", str(w.tmp / "nope.pt")],
    "check folder": lambda w: ["check", str(w.tmp)], "check fifo": lambda w: ["check", str(_fifo(w.tmp / "f.pt"))],
    "check unknown release": lambda w: ["check", str(w.keep), "--torch", "0.0.1"],
    "list extra": lambda w: ["list", "--bogus"],
    "bench sizes": lambda w: ["bench", "--sizes", "lots"], "bench rounds": lambda w: ["bench", "--rounds", "x"],
    "bench format": lambda w: ["bench", "--format", "nosuch", "--sizes", "1KB"],
    "bench-compare no args": lambda w: ["bench-compare"],
    "bench-compare missing": lambda w: ["bench-compare", str(w.tmp / "a.json"), str(w.tmp / "b.json")],
    "bench-compare not json": lambda w: ["bench-compare", str(w.keep), str(w.keep)],
    "bench-compare list": lambda w: ["bench-compare", str(_text(w.tmp / "l.json", "[]")), str(w.tmp / "l.json")],
    "bench-compare {}": lambda w: ["bench-compare", str(_text(w.tmp / "o.json", "{}")), str(w.tmp / "o.json")],
    "bench-compare threshold": lambda w: ["bench-compare", str(w.keep), str(w.keep), "--threshold", "lots"],
    "bench-plot no args": lambda w: ["bench-plot"],
    "produce out with markup": lambda w: ["produce", "--out", str(w.tmp / "[/x]"), "--case", "nosuch"],
    "consume results with markup": lambda w: ["consume", str(w.tmp / "[/x]"), "--results", str(w.tmp / "[/y]")],
    "summary file with markup": lambda w: ["summary", str(_text(w.tmp / "[/x].jsonl", "[]"))],
    "report file with markup": lambda w: ["report", str(_text(w.tmp / "[/x].jsonl", "5")), "--out",
                                          str(w.tmp / "[/o]")],
    "check file with markup": lambda w: ["check", str(w.tmp / "[/x].pt")],
    "bench-compare file with markup": lambda w: ["bench-compare", str(_text(w.tmp / "[/x].json", "{}")), str(w.keep)],
    "bench-plot missing": lambda w: ["bench-plot", str(w.tmp / "a.json"), "--out", str(w.tmp / "p")],
    "bench-plot not json": lambda w: ["bench-plot", str(w.keep), "--out", str(w.tmp / "p")],
    "bench-plot {}": lambda w: ["bench-plot", str(_text(w.tmp / "o.json", "{}")), "--out", str(w.tmp / "p")],
}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)  # "[/x].json" lives in a folder named "["
    path.write_text(text)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _too_deep(w: World) -> Path:
    deep = w.tmp / "d1" / "d2" / "d3"
    shutil.copytree(w.env, deep / w.env.name)
    return w.tmp / "d1"


def _delete_artifact(w: World) -> Path:
    (w.env / "simple" / "state_dict_zip.pt").unlink()
    return w.art


def _flip_artifact(w: World) -> Path:
    path = w.env / "simple" / "whole_model_legacy.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    return w.art


for _name, _build in ARGUMENTS.items():
    row(_name)(_build)


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    from harness import cli

    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def files_outside(w: World) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in tree_state(w.tmp).items()}


def test_the_table_has_at_least_200_rows() -> None:
    assert len(ROWS) >= 200, len(ROWS)
    assert len({ident for ident, _, _ in ROWS}) == len(ROWS)


#: a sample of the table runs in the fast tier; all of it in the slow one
FAST_EVERY = 25


@pytest.mark.parametrize("ident, build, codes", [
    pytest.param(*r, id=r[0], marks=() if number % FAST_EVERY == 0 else pytest.mark.slow)
    for number, r in enumerate(ROWS)])
def test_bad_input_table(world: World, capsys: pytest.CaptureFixture, ident: str, build: Callable, codes: frozenset,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(world.tmp)
    argv = build(world)
    capsys.readouterr()
    keep_before = world.keep.read_bytes()
    code, out, err = run_in_process(argv, capsys)
    assert "Traceback" not in err + out
    assert code in codes, (code, out[-2000:], err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckpt-harness: error: "), err
        assert "\x1b" not in lines[0]
    assert world.keep.read_bytes() == keep_before  # a refused run never touches another file
