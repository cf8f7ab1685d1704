"""``check`` on small hostile files: each gives one line, within 10 s and under 500 MB, and runs nothing.

The files are the crafted inputs of issue 10 (a deep tuple that segfaulted the reader, a memo
bomb that hung it, zip bombs, lying lengths, broken headers, names that are rich markup or
terminal escapes), assembled by hand in :mod:`tests.craft`. In-process tests inspect each file in
the forked child ``check`` uses (:func:`harness.inspect.isolated.inspect_isolated`) and measure
that child; the CLI tests (slow) run ``ckpt-harness check`` over all of them at once.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from harness.inspect import (
    CORRUPT,
    NOT_A_CHECKPOINT,
    OVER_LIMITS,
    TRUNCATED,
    inspect_file,
)
from harness.inspect.isolated import inspect_isolated
from harness.inspect.limits import Limits
from tests import craft
from tests.conftest import REPO
from tests.craft import (
    BUILD,
    DUP,
    EMPTY_DICT,
    EMPTY_TUPLE,
    MARK,
    NEWOBJ,
    NONE,
    SETITEM,
    SETITEMS,
    TUPLE1,
    TUPLE2,
    get,
    glob,
    integer,
    put,
    text,
)

MAX_SECONDS = 10.0
MAX_MB = 500


def _module(children: bytes, params: bytes = b"") -> bytes:
    """A pickled ``mymodels.Net`` stand-in: NEWOBJ, then BUILD with ``_parameters`` and ``_modules`` dicts."""
    return (glob("mymodels", "Net") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + MARK
            + text("_parameters") + EMPTY_DICT + (MARK + params + SETITEMS if params else b"")
            + text("_modules") + EMPTY_DICT + (MARK + children + SETITEMS if children else b"")
            + SETITEMS + BUILD)


def module_dag(levels: int = 60) -> bytes:
    """Each level's module holds the level below twice: 2**levels leaves, 2*levels objects."""
    body = _module(b"", text("weight") + text("p")) + put(0)
    for level in range(1, levels + 1):
        body += _module(text("a") + get(level - 1) + text("b") + get(level - 1)) + put(level)
    return craft.program(body)


def module_cycle() -> bytes:
    """A module whose only submodule is itself."""
    return craft.program(glob("mymodels", "Net") + EMPTY_TUPLE + NEWOBJ + put(0) + EMPTY_DICT + MARK
                         + text("_parameters") + EMPTY_DICT + MARK + text("w") + text("p") + SETITEMS
                         + text("_modules") + EMPTY_DICT + MARK + text("me") + get(0) + SETITEMS + SETITEMS + BUILD)


def deep_tuple(depth: int = 400_000, as_key: bool = False) -> bytes:
    nested = EMPTY_TUPLE + TUPLE1 * depth
    if as_key:
        return craft.program(EMPTY_DICT + nested + NONE + SETITEM)
    return craft.program(EMPTY_DICT + text("deep") + nested + SETITEM)


def shared_tuple(levels: int = 60, as_key: bool = True) -> bytes:
    """``t = (None, None)``; then ``t = (t, t)`` 60 times: 2**60 leaves through shared references."""
    nested = NONE + (DUP + TUPLE2) * levels
    if as_key:
        return craft.program(EMPTY_DICT + nested + integer(1) + SETITEM)
    return craft.program(EMPTY_DICT + text("laughs") + nested + SETITEM)


def build_on_tensor() -> bytes:
    state = EMPTY_DICT + MARK + text("storage") + integer(5) + text("shape") + text("x") + SETITEMS
    return craft.program(EMPTY_DICT + text("w") + craft.tensor() + state + BUILD + SETITEM)


def sized(opcode: bytes, declared: int = 2**62) -> bytes:
    return craft.program(EMPTY_DICT + text("w") + opcode + declared.to_bytes(8, "little") + b"abc" + SETITEM,
                         craft.PROTO4)


def export_archive(config: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/archive_format", b"pt2")
        archive.writestr("model/data/weights/model_weights_config.json", config)
        archive.writestr("model/models/model.json", b"{}")
    return buffer.getvalue()


def zip_bomb(pt2: bool = False, declared: int | None = None) -> bytes:
    data, size = craft.deflate_bomb(3000)  # ~3 MB that inflates to ~3 GiB
    name = "model/data/weights/model_weights_config.json" if pt2 else "archive/data.pkl"
    entries = {name: (data, declared if declared is not None else size, 8),
               "archive/version" if not pt2 else "model/archive_format": (b"3\n" if not pt2 else b"pt2", 2 + pt2, 0)}
    if pt2:
        entries["model/models/model.json"] = (b"{}", 2, 0)
    return craft.zip_with_raw_entries(entries)


def safetensors(header: bytes, data: bytes = b"") -> bytes:
    return craft.safetensors_file(header, data)


#: name → (file bytes, the containers that are a right answer, a word the detail must contain)
HOSTILE: dict[str, tuple[Callable[[], bytes], tuple[str, ...], str]] = {
    "deep_tuple.pt": (lambda: craft.torch_zip(deep_tuple()), (OVER_LIMITS,), "deeper"),
    "deep_tuple_key.pt": (lambda: craft.torch_zip(deep_tuple(as_key=True)), (OVER_LIMITS,), "deeper"),
    "shared_tuple_key.pt": (lambda: craft.torch_zip(shared_tuple()), (OVER_LIMITS,), "billion laughs"),
    "shared_tuple_value.pt": (lambda: craft.torch_zip(shared_tuple(as_key=False)), (OVER_LIMITS,), "billion laughs"),
    "module_dag.pt": (lambda: craft.torch_zip(module_dag()), (OVER_LIMITS,), "billion laughs"),
    "module_cycle.pt": (lambda: craft.torch_zip(module_cycle()), ("zip",), ""),
    "zip_bomb.pt": (lambda: zip_bomb(), (OVER_LIMITS,), "zip entry"),
    "zip_bomb_lying.pt": (lambda: zip_bomb(declared=1000), (CORRUPT, OVER_LIMITS), ""),
    "bomb.pt2": (lambda: zip_bomb(pt2=True), (OVER_LIMITS,), "zip entry"),
    "binbytes8.pt": (lambda: craft.torch_zip(sized(b"\x8e")), (CORRUPT,), "BINBYTES8"),
    "bytearray8.pt": (lambda: craft.torch_zip(sized(b"\x96")), (CORRUPT,), "BYTEARRAY8"),
    "binunicode8.pt": (lambda: craft.torch_zip(sized(b"\x8d")), (CORRUPT,), "BINUNICODE8"),
    "binbytes8_legacy.pt": (lambda: craft.legacy_stream(sized(b"\x8e")), (CORRUPT, TRUNCATED), "BINBYTES8"),
    "bytearray8_legacy.pt": (lambda: craft.legacy_stream(sized(b"\x96")), (CORRUPT, TRUNCATED), "BYTEARRAY8"),
    "long4.pt": (lambda: craft.torch_zip(craft.program(b"\x8b" + (2**31 - 1).to_bytes(4, "little") + b"\x00")),
                 (OVER_LIMITS,), "integer"),
    "build_on_tensor.pt": (lambda: craft.torch_zip(build_on_tensor(), {"data/0": bytes(12)}), ("zip",), ""),
    "legacy_keys_int.pt": (lambda: craft.legacy_stream(craft.program(EMPTY_DICT), craft.program(integer(5))),
                           (CORRUPT,), "storage keys"),
    "st_wrong_types.safetensors": (lambda: safetensors(b'{"w": {"dtype": 5, "shape": "x", "data_offsets": "y"}}'),
                                   (CORRUPT,), "dtype"),
    "st_list.safetensors": (lambda: safetensors(b'{"w": [1, 2]}'), (CORRUPT,), "not an object"),
    "st_deep.safetensors": (lambda: safetensors(b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
                            (CORRUPT,), "JSON"),
    "st_negative.safetensors": (lambda: safetensors(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, -15]}}'),
                                (CORRUPT,), "data_offsets"),
    "export_config_list.pt2": (lambda: export_archive(b"[1, 2, 3]"), (CORRUPT,), "config"),
    "export_config_deep.pt2": (lambda: export_archive(b"[" * 100_000 + b"]" * 100_000), (CORRUPT,), "JSON"),
    "zeros_head.bin": (lambda: bytes(4096), (NOT_A_CHECKPOINT,), "all zero"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    made = {}
    for name, (build, _, _) in HOSTILE.items():
        made[name] = folder / name
        made[name].write_bytes(build())
    return made


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_one_line_in_time_and_memory(hostile: dict[str, Path], name: str) -> None:
    _, containers, word = HOSTILE[name]
    before = _rss_mb()
    found, used = inspect_isolated(hostile[name])
    assert found.container in containers, (found.container, found.detail)
    assert word in found.detail, found.detail
    assert "\n" not in found.detail and len(found.detail) < 600
    assert used["seconds"] < MAX_SECONDS, used
    # a forked child's peak RSS counts the pages it shares with this process: compare the growth
    assert used["max_rss_mb"] - before < MAX_MB, (used, before)


def test_module_cycle_and_dag_keys_are_bounded(hostile: dict[str, Path]) -> None:
    cycle = inspect_file(hostile["module_cycle.pt"])
    assert cycle.structure == "whole module" and cycle.module_class == "mymodels.Net"
    tensor = inspect_file(hostile["build_on_tensor.pt"])
    assert (tensor.container, tensor.tensors, tensor.devices) == ("zip", 1, ["cpu"]), tensor


def test_a_smaller_module_dag_is_inspected(tmp_path: Path) -> None:
    """Sharing is not refused as such: 8 levels (256 leaves) are counted, not expanded into a hang."""
    path = tmp_path / "dag8.pt"
    path.write_bytes(craft.torch_zip(module_dag(8)))
    found = inspect_file(path)
    assert found.container == "zip" and found.structure == "whole module", found.detail


def test_the_limits_themselves_are_what_stops_each_file(hostile: dict[str, Path], tmp_path: Path) -> None:
    """With generous limits the shared tuple as a value is inspected (its nodes are counted, 2**61)."""
    big = Limits(expanded_nodes=2**70)
    found = inspect_file(hostile["shared_tuple_value.pt"], big)
    assert found.container == "zip", found.detail
    assert inspect_file(hostile["shared_tuple_value.pt"]).container == OVER_LIMITS


def test_time_budget_and_memory_ceiling_of_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted blow-ups the limits do not foresee: a detector that sleeps, one that allocates without end."""
    from harness.inspect import containers

    path = tmp_path / "plain.bin"
    path.write_bytes(b"hello\n")

    def sleeps(*args: object) -> None:
        time.sleep(60)

    def allocates(*args: object) -> None:
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))

    monkeypatch.setattr(containers, "DETECTORS", [sleeps])
    started = time.monotonic()
    found, used = inspect_isolated(path, Limits(seconds=1.0))
    assert found.container == OVER_LIMITS and "budget" in found.detail, found
    assert time.monotonic() - started < 5
    monkeypatch.setattr(containers, "DETECTORS", [allocates])
    found, used = inspect_isolated(path, Limits(memory_mb=256))
    assert found.container == OVER_LIMITS and "memory" in found.detail, found
    assert used["max_rss_mb"] - _rss_mb() < 400, used


def test_sparse_all_zero_file_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "zeros.pt"
    with open(path, "wb") as stream:
        stream.truncate(2 * 1024**3)  # sparse: 2 GiB of zeros, no disk used
    found = inspect_file(path)
    assert found.container == NOT_A_CHECKPOINT and "all zero" in found.detail and "text" not in found.detail


def test_names_with_markup_and_escapes_survive_inspection(tmp_path: Path) -> None:
    path = tmp_path / "names.pt"
    body = craft.call(glob("evil[/x]mod", "Cls[/bold]\x1b[2J\x1b[8m"))
    path.write_bytes(craft.torch_zip(craft.program(body), version=b"3\x1b[2J[/x]\n"))
    found = inspect_file(path)
    assert "evil[/x]mod.Cls[/bold]\x1b[2J\x1b[8m" in found.globals


# -- the CLI, over every hostile file at once ---------------------------------------------------

ESCAPES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_cli(*args: str, cwd: Path = REPO) -> tuple[subprocess.CompletedProcess, float, float]:
    """``python -m harness check ARGS`` from a wrapper that reports its children's peak RSS (MB)."""
    wrapper = ("import resource, subprocess, sys, json; done = subprocess.run(sys.argv[1:], capture_output=True);"
               "sys.stdout.buffer.write(done.stdout); sys.stderr.buffer.write(done.stderr);"
               "print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss), file=sys.stderr);"
               "sys.exit(done.returncode)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "harness", "check", *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    *stderr, peak = done.stderr.rstrip("\n").split("\n")
    done.stderr = "\n".join(stderr)
    return done, time.monotonic() - started, int(peak) / 1024


@pytest.mark.slow
def test_cli_one_line_per_hostile_file(hostile: dict[str, Path], tmp_path: Path) -> None:
    names = tmp_path / "names.pt"
    names.write_bytes(craft.torch_zip(craft.program(craft.call(glob("evil[/x]mod", "Cls[/bold]\x1b[2J\x1b[8m"))),
                                      version=b"3\x1b[2J[/x]\n"))
    paths = [str(p) for p in hostile.values()] + [str(names)]
    done, seconds, peak = _check_cli("--json", *paths)
    assert done.returncode == 1 and not done.stderr.strip(), done.stderr[-2000:]
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in reports] == paths
    assert peak < MAX_MB, peak  # the check process (torch imported) and every forked inspection
    slow = {r["path"]: r["inspection_seconds"] for r in reports if not r["inspection_seconds"] < MAX_SECONDS}
    assert not slow, slow
    text_run, _, _ = _check_cli(*paths)
    assert text_run.returncode == 1, text_run.stderr
    assert "Traceback" not in text_run.stderr and not text_run.stderr.strip(), text_run.stderr[-2000:]
    assert not ESCAPES.search(text_run.stdout), "a file's escape sequences reached the terminal"
    assert "evil[/x]mod.Cls[/bold]" in text_run.stdout and "\\x1b[2J" in text_run.stdout
    for path in paths:
        lines = [line for line in text_run.stdout.splitlines() if line.startswith(path + ":")]
        assert len(lines) == 1, (path, lines)


@pytest.mark.slow
def test_cli_fifo_and_device_are_named_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    for path, word in ((fifo, "is a FIFO"), (Path("/dev/zero"), "is a character device")):
        done, seconds, _ = _check_cli(str(path))
        assert done.returncode == 2 and word in done.stderr and "no such file" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and seconds < 60


def test_fifo_and_device_are_not_opened(tmp_path: Path) -> None:
    """Opening a FIFO blocks and /dev/zero never ends: inspect_file answers from stat alone."""
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        found = inspect_file(path)
        assert found.container == NOT_A_CHECKPOINT and "not a regular file" in found.detail


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J\x1b[8mname", "\\x1b[2J\\x1b[8mname"), ("[/x][bold]", "\\[/x]\\[bold]"),
    ("evil\u202etxt.pt", "evil\\u202etxt.pt"), ("lone \udcff", "lone \\udcff"), ("\x9b31m", "\\x9b31m"),
])
def test_text_from_files_is_inert_for_the_terminal(raw: str, shown: str) -> None:
    from rich.console import Console

    from harness.commands.check import safe

    assert safe(raw) == shown
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    console.print(f"[bold]{safe(raw)}[/]")  # no MarkupError; the raw escape never reaches the output
    assert "\x1b[2J" not in console.file.getvalue() and "\u202e" not in console.file.getvalue()


def _real_data_pkl() -> bytes:
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2, 3), "b": torch.ones(3), "step": 7, "cfg": {"lr": 0.1, "name": "x"}}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


REAL_PKL = _real_data_pkl()


@pytest.mark.parametrize("wrap", ["zip", "legacy", "raw"])
def test_damaged_pickles_never_escape_the_inspection(tmp_path: Path, wrap: str) -> None:
    """Hypothesis flips, inserts and cuts bytes of a real data.pkl: inspect_file always answers (no exception)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    edits = st.lists(st.tuples(st.integers(0, len(REAL_PKL)), st.sampled_from(["flip", "insert", "cut"]),
                               st.binary(min_size=1, max_size=9)), max_size=4)
    path = tmp_path / f"fuzzed.{wrap}"

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(edits)
    def inspect_damaged(changes: list[tuple[int, str, bytes]]) -> None:
        data = bytearray(REAL_PKL)
        for at, kind, blob in changes:
            at = min(at, len(data))
            if kind == "flip":
                data[at:at + len(blob)] = blob
            elif kind == "insert":
                data[at:at] = blob
            else:
                del data[at:]
        payload = bytes(data)
        path.write_bytes(craft.torch_zip(payload) if wrap == "zip" else
                         craft.legacy_stream(payload) if wrap == "legacy" else b"\x80\x02" + payload)
        found = inspect_file(path, Limits(seconds=5))
        assert found.container and "\n" not in found.detail

    inspect_damaged()
