"""``ckpt-harness report`` from real records: grid states, every output kind, GITHUB_STEP_SUMMARY, partial matrices.

The records come from real runs of the CLI: the frozen corpus written by torch 2.5.1, consumed
here, plus a roundtrip of two small cases with the installed torch. Cell states are recomputed
in the test from the raw records with its own simple rule and compared with what the HTML says.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO, records, run_cli

CORPUS_251 = REPO / "cases" / "corpus" / "2.5.1"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("results")
    # the committed corpus is the harness's own source: vouched for, so its unsafe loads run too
    corpus = run_cli("consume", str(CORPUS_251), "--results", str(folder / "corpus-2.5.1.jsonl"), "--trust")
    assert corpus.returncode == 0, corpus.stderr[-2000:]
    local = run_cli("roundtrip", "--case", "simple", "--case", "tied", "--results", str(folder / "local.jsonl"))
    assert local.returncode == 0, local.stderr[-2000:]
    return [folder / "corpus-2.5.1.jsonl", folder / "local.jsonl"]


class _Cells(HTMLParser):
    """Collects ``{(format, producer, consumer): state}`` from the grids of the HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.format = ""
        self.cells: dict[tuple[str, str, str], str] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table" and "grid" in a.get("class", ""):
            self.format = a["data-format"]
        if tag == "td" and "data-state" in a:
            self.cells[(self.format, a["data-producer"], a["data-consumer"])] = a["data-state"]
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])


def _label(side: dict) -> str:
    return f"{side['torch']}/{side['device']}"


def expected_states(recs: list[dict]) -> dict[tuple[str, str, str], str]:
    """Cell states straight from the raw records: worst of failure > expected failure > pass > skip."""
    outcomes: dict[tuple[str, str, str], set[str]] = collections.defaultdict(set)
    for r in recs:
        if r.get("problem"):
            kind = "fail"
        elif r.get("expected"):
            kind = "xfail"
        else:
            kind = r["status"]
        outcomes[(r["format"], _label(r["producer"]), _label(r["consumer"]))].add(kind)
    return {key: next(s for s in ("fail", "xfail", "pass", "skip") if s in kinds) for key, kinds in outcomes.items()}


def render(results: list[Path], out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("report", *map(str, results), "--out", str(out), *extra, extra_env=env)


def test_html_grid_states_match_the_records(results: list[Path], tmp_path: Path) -> None:
    done = render(results, tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "index.html").read_text()
    parser = _Cells()
    parser.feed(page)
    want = expected_states([r for p in results for r in records(p)])
    producers = {k[1] for k in want}
    assert len(producers) == 2, producers  # 2.5.1 from the corpus and the installed torch
    got = {k: v for k, v in parser.cells.items() if v != "missing"}
    assert got == want
    states = set(want.values())
    assert {"pass", "xfail"} <= states, states  # e.g. 2.5.1 whole models refused by 2.13's default load
    assert not parser.external, f"the page must not load anything: {parser.external[:5]}"
    assert "http://" not in page and "https://" not in page
    # an expected failure opens to its check, the one-line detail and the expectation's reason
    assert "<details>" in page and "whole-model" not in page.split("<details>")[0]
    assert "weights_only=True" in page or "Weights only load failed" in page


def test_no_expectations_turns_expected_failures_into_failures(results: list[Path], tmp_path: Path) -> None:
    empty = tmp_path / "none.toml"
    empty.write_text("# nothing is expected\n")
    done = render(results, tmp_path / "out", "--expectations", str(empty))
    assert done.returncode == 1, done.stderr  # findings
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    states = {cell["state"] for grid in summary["grids"] for row in grid["rows"] for cell in row["cells"].values()}
    assert "fail" in states and "xfail" not in states
    failing = [cell for grid in summary["grids"] for row in grid["rows"] for cell in row["cells"].values()
               if cell["state"] == "fail"]
    assert all(cell["problems"] for cell in failing)
    assert all(g["detail"] and g["cases"] for cell in failing for g in cell["problems"])


def test_partial_matrix_renders_missing_cells(results: list[Path], tmp_path: Path) -> None:
    """A consume session that died early: drop the installed torch's own state_dict_zip records."""
    recs = records(results[1])
    kept = [r for r in recs if r["format"] != "state_dict_zip"]
    assert len(kept) < len(recs)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
    done = render([results[0], partial], tmp_path / "out")
    assert done.returncode == 0, done.stderr
    parser = _Cells()
    parser.feed((tmp_path / "out" / "index.html").read_text())
    local = _label(recs[0]["producer"])
    assert parser.cells[("state_dict_zip", local, _label(recs[0]["consumer"]))] == "missing"
    assert parser.cells[("state_dict_zip", "2.5.1+cu124/cpu", _label(recs[0]["consumer"]))] == "pass"


def test_markdown_json_junit_and_step_summary(results: list[Path], tmp_path: Path) -> None:
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    done = render(results, tmp_path / "out", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("## checkpoint-harness results")
    assert "| producer ↓ consumer → |" in markdown and "### " in markdown
    appended = step.read_text()
    assert appended.startswith("earlier step\n") and markdown in appended

    all_records = [r for p in results for r in records(p)]
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["totals"].values()) == sum(r.get("count", 1) for r in all_records)
    assert {g["format"] for g in summary["grids"]} == {r["format"] for r in all_records}
    assert {s["role"] for s in summary["sessions"]} == {"producer", "consumer"}

    suites = ET.parse(out / "junit.xml").getroot()
    assert suites.tag == "testsuites"
    # one test case per artifact and producer -> consumer pair; skipped when none of its checks passed
    artifacts: dict[tuple, list[str]] = collections.defaultdict(list)
    for r in all_records:
        artifacts[(r["format"], r["producer"]["torch"], r["consumer"]["torch"], r["case"])].append(r["status"])
    assert int(suites.get("tests")) == len(artifacts) == len(suites.findall("./testsuite/testcase"))
    assert int(suites.get("skipped")) == sum(1 for statuses in artifacts.values() if "pass" not in statuses) > 0
    assert int(suites.get("failures")) == 0 and int(suites.get("errors")) == 0
    passed = sum(int(case.get("assertions")) for case in suites.iter("testcase"))
    assert passed == sum(r.get("count", 1) for r in all_records if r["status"] == "pass" and not r.get("expected"))


def test_benchmark_charts_are_embedded(results: list[Path], tmp_path: Path) -> None:
    bench = tmp_path / "test_tiny_bench.py"
    bench.write_text("def test_sum(benchmark):\n    benchmark(sum, range(100))\n"
                     "def test_sorted(benchmark):\n    benchmark(sorted, range(100))\n")
    made = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(bench),
                           f"--benchmark-json={tmp_path / 'bench.json'}", "--benchmark-max-time=0.05"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert made.returncode == 0, made.stdout[-2000:]
    done = render(results, tmp_path / "out", "--bench", str(tmp_path / "bench.json"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 1
    assert 'id="benchmarks"' in page


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = run_cli("report", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path))
    assert missing.returncode == 2 and "no such results file" in missing.stderr
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    broken = run_cli("report", str(garbage), "--out", str(tmp_path))
    assert broken.returncode == 2 and "garbage.jsonl:1" in broken.stderr
