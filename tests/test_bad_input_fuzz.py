"""Bad-input fuzz: Hypothesis-made manifests, JSON-lines records, benchmark JSON, zip layouts and
inert pickles through the subcommands that read them, each in a subprocess.

Every run must: print no traceback, finish within its timeout, exit 0, 1 or 2 (bad input is
one line), and change no file outside its own output (the temp tree is snapshotted before and
after). ``CKPT_FUZZ_EXAMPLES`` sets the examples per subcommand (default 12). Every payload is
inert: the pickles build plain containers only.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, tree_state

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("CKPT_FUZZ_EXAMPLES", "12"))
TIMEOUT_S = 180
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20) | st.sampled_from(
    ["[/x]", "[default]", "\x1b[2J", "<script>alert(1)</script>", "../../etc/passwd", "/abs", "", "simple",
     "state_dict_zip", "ok", "skip", "pass", "fail"])
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT_S, cwd=cwd)


def assert_well_behaved(result: subprocess.CompletedProcess) -> None:
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both[-3000:]
    assert result.returncode in (0, 1, 2), (result.returncode, both[-3000:])
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckpt-harness: error: "), result.stderr


def outside(state: dict[str, Any], *own: str) -> dict[str, Any]:
    """The files of ``state`` that are not a run's own output (nor its hidden lock/part files)."""
    return {k: v for k, v in state.items() if not any(k.startswith(o) or k.startswith("." + o) for o in own)}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "art"
    result = run(["produce", "--out", str(out), "--case", "simple", "--format", "state_dict_zip"], REPO)
    assert result.returncode == 0, result.stderr
    return out


def mutate(document: Any, path: list[Any], value: Any) -> Any:
    """``document`` with the node at ``path`` (indices taken modulo the sizes met) replaced by ``value``."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return value
    keys = sorted(document) if isinstance(document, dict) else list(range(len(document)))
    key = keys[path[0] % len(keys)]
    document[key] = mutate(document[key], path[1:], value)
    return document


@FUZZ
@given(path=st.lists(st.integers(0, 50), max_size=6), value=json_values, whole=st.booleans())
def test_fuzzed_manifests_through_consume_and_corrupt(artifacts: Path, tmp_path_factory: pytest.TempPathFactory,
                                                       path: list[int], value: Any, whole: bool) -> None:
    work = tmp_path_factory.mktemp("m")
    shutil.copytree(artifacts, work / "art")
    (manifest,) = (work / "art").glob("*/manifest.json")
    document = value if whole else mutate(json.loads(manifest.read_text()), path, value)
    manifest.write_text(json.dumps(document))
    before = tree_state(work)
    for command, extra in (("consume", []), ("corrupt", ["--count", "0"])):
        result = run([command, str(work / "art"), "--results", str(work / f"{command}.jsonl"), *extra], work)
        assert_well_behaved(result)
    assert outside(tree_state(work), "consume.jsonl", "corrupt.jsonl") == before


GOOD_RECORD = {"producer": {"torch": "2.13.0", "python": "3.11", "device": "cpu", "default_weights_only": True},
               "consumer": {"torch": "2.5.1", "python": "3.11", "device": "cpu", "default_weights_only": False},
               "case": "simple", "format": "state_dict_zip", "check": "tensors", "load_mode": "default",
               "status": "pass", "detail": "", "duration_s": 0.1}


@FUZZ
@given(lines=st.lists(st.tuples(st.lists(st.integers(0, 20), max_size=3), json_values, st.booleans()), min_size=1,
                      max_size=4), cut=st.booleans())
def test_fuzzed_records_through_summary_and_report(tmp_path_factory: pytest.TempPathFactory,
                                                    lines: list, cut: bool) -> None:
    work = tmp_path_factory.mktemp("r")
    rendered = [json.dumps(mutate(json.loads(json.dumps(GOOD_RECORD)), path, value) if keep else value)
                for path, value, keep in lines]
    body = "\n".join(rendered) + "\n"
    (work / "r.jsonl").write_text(body[:-len(body) // 3] if cut else body)
    before = tree_state(work)
    assert_well_behaved(run(["summary", str(work / "r.jsonl")], work))
    assert_well_behaved(run(["report", str(work / "r.jsonl"), "--out", str(work / "reports")], work))
    assert outside(tree_state(work), "reports") == before
    if (work / "reports" / "summary.md").exists():
        markdown = (work / "reports" / "summary.md").read_text()
        assert "<script" not in markdown and "](javascript:" not in markdown


@FUZZ
@given(document=json_values, path=st.lists(st.integers(0, 20), max_size=4))
def test_fuzzed_benchmark_json_through_bench_compare_and_plot(tmp_path_factory: pytest.TempPathFactory,
                                                              document: Any, path: list[int]) -> None:
    work = tmp_path_factory.mktemp("b")
    base = {"machine_info": {"torch": "2.13.0"}, "benchmarks": [
        {"name": "x", "stats": {"median": 0.1, "min": 0.1, "max": 0.2, "mean": 0.12, "rounds": 3},
         "extra_info": {"operation": "save", "format": "state_dict_zip", "size": "1MB", "size_bytes": 1048576,
                        "cache": "n/a", "bytes": 1048576, "baseline": "raw_write", "kind": "format",
                        "direction": "write"}}]}
    (work / "a.json").write_text(json.dumps(base))
    (work / "b.json").write_text(json.dumps(mutate(json.loads(json.dumps(base)), path, document)))
    before = tree_state(work)
    assert_well_behaved(run(["bench-compare", str(work / "a.json"), str(work / "b.json")], work))
    assert_well_behaved(run(["bench-plot", str(work / "b.json"), "--out", str(work / "plots")], work))
    assert outside(tree_state(work), "plots") == before


def inert_pickles() -> list[bytes]:
    """Plain containers only: nothing here names a callable that does anything."""
    values = [{"a": 1}, [1, 2.5, "x"], OrderedDict(w=b"\x00" * 8), (None, True), {"nested": {"deep": [[[]]]}}]
    return [pickle.dumps(v, protocol=p) for v in values for p in (2, 4)]


entry_names = st.sampled_from(["archive/data.pkl", "archive/version", "archive/data/0", "archive/byteorder",
                               "data.pkl", "../escape", "/abs", "a/" * 30 + "x", "archive/.data/version",
                               "model.safetensors", "archive/constants.pkl"]) | text
entry_bodies = st.binary(max_size=256) | st.sampled_from(inert_pickles() + [b"3\n", b"little", b""])


@FUZZ
@given(entries=st.lists(st.tuples(entry_names, entry_bodies), max_size=5), raw=st.booleans(),
       body=st.binary(max_size=512) | st.sampled_from(inert_pickles()))
def test_fuzzed_zip_layouts_and_pickles_through_check(tmp_path_factory: pytest.TempPathFactory,
                                                      entries: list, raw: bool, body: bytes) -> None:
    work = tmp_path_factory.mktemp("z")
    target = work / "model.pt"
    if raw:
        target.write_bytes(body)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in entries:
                archive.writestr(name or "empty", data)
        target.write_bytes(buffer.getvalue())
    before = tree_state(work)
    assert_well_behaved(run(["check", str(target)], work))
    assert_well_behaved(run(["check", str(target), "--json"], work))
    assert tree_state(work) == before
