"""The typed contracts (harness.contracts, harness.records.Record): committed schemas, validation
at every read, safe output files, produce's placement of environment folders, and escaping.

All in-process and fast; the subprocess side is tests/test_bad_input.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest

from harness import contracts, placement
from harness.errors import HarnessError
from harness.escaping import markdown, strip_controls, terminal
from harness.manifest import MANIFEST_NAME, read
from harness.outputs import OutputFile, check_output_file
from harness.records import Record, RecordWriter, read_records

REPO = Path(__file__).resolve().parents[1]
CORPUS_MANIFESTS = sorted((REPO / "cases" / "corpus").glob(f"*/*/{MANIFEST_NAME}"))


def corpus_document() -> dict[str, Any]:
    return json.loads(CORPUS_MANIFESTS[-1].read_text())


def brief() -> dict[str, Any]:
    return {"torch": "2.13.0", "python": "3.11.7", "device": "cpu", "default_weights_only": True}


def record(**changes: Any) -> dict[str, Any]:
    base = {"producer": brief(), "consumer": brief(), "case": "simple", "format": "state_dict_zip",
            "check": "tensors", "load_mode": "default", "status": "pass", "detail": "", "duration_s": 0.1}
    return {**base, **changes}


# ------------------------------------------------------------------------------------------
# published schemas
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["manifest.schema.json", "record.schema.json"])
def test_committed_schema_matches_the_models(name: str) -> None:
    committed = (contracts.SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == contracts.render_schema(contracts.schemas()[name]), (
        f"harness/data/schema/{name} drifted from the models: run `python -m harness.contracts` and commit it")


def test_schema_drift_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift test can fail: a model with one more field gives a different schema."""
    before = contracts.render_schema(contracts.schemas()["manifest.schema.json"])

    class Wider(contracts.Manifest):
        extra_field: int = 0

    monkeypatch.setattr(contracts, "Manifest", Wider)
    assert contracts.render_schema(contracts.schemas()["manifest.schema.json"]) != before


@pytest.mark.parametrize("name", ["manifest.schema.json", "record.schema.json"])
def test_committed_schemas_are_valid_json_schemas(name: str) -> None:
    schema = json.loads((contracts.SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", CORPUS_MANIFESTS, ids=[p.parent.parent.name for p in CORPUS_MANIFESTS])
def test_corpus_manifests_follow_both_the_model_and_the_published_schema(path: Path) -> None:
    document = json.loads(path.read_text())
    jsonschema.validate(document, json.loads((contracts.SCHEMA_DIR / "manifest.schema.json").read_text()))
    assert {k: v for k, v in read(path).items() if k != "_root"} == document  # read keeps the document as written


def test_records_follow_the_published_schema(tmp_path: Path) -> None:
    schema = json.loads((contracts.SCHEMA_DIR / "record.schema.json").read_text())
    rec = Record(**record(expected={"id": "x", "reason": "y"}, problem=None))
    jsonschema.validate(json.loads(json.dumps(dataclasses.asdict(rec))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record(status="maybe"), schema)


# ------------------------------------------------------------------------------------------
# manifests: one line naming the file and the field
# ------------------------------------------------------------------------------------------


def _damage(document: dict[str, Any], change: str) -> Any:
    ok = next(i for i, e in enumerate(document["entries"]) if e["status"] == "ok")
    if change == "entries=5":
        document["entries"] = 5
    elif change == "entries=[5]":
        document["entries"] = [5]
    elif change == "entries=[{}]":
        document["entries"] = [{}]
    elif change == "no file_bytes":
        del document["entries"][ok]["file_bytes"]
    elif change == "env=5":
        document["env"] = 5
    elif change == "cases=[]":
        document["cases"] = []
    elif change == "case=int":
        document["entries"][ok]["case"] = 7
    elif change == "file=int":
        document["entries"][ok]["file"] = 7
    elif change == "negative file_bytes":
        document["entries"][ok]["file_bytes"] = -15
    elif change == "unknown status":
        document["entries"][ok]["status"] = "great"
    elif change == "entry of an unbuilt case":
        document["entries"][ok]["case"] = "not_in_cases"
    elif change == "env_id with a slash":
        document["env_id"] = "../elsewhere"
    elif change == "schema 2":
        document["schema"] = 2
    elif change == "fingerprint tensors=[]":
        document["entries"][ok]["fingerprint"]["tensors"] = []
    elif change == "deep nesting":
        return "[" * 100_000 + "]" * 100_000
    return document


MANIFEST_DAMAGE = {
    "entries=5": "field entries", "entries=[5]": "field entries.0", "entries=[{}]": "field entries.0",
    "no file_bytes": "file_bytes", "env=5": "field env", "cases=[]": "field cases", "case=int": ".case",
    "file=int": ".file", "negative file_bytes": "file_bytes", "unknown status": "field entries",
    "entry of an unbuilt case": "has an artifact but no built case section", "env_id with a slash": "field env_id",
    "schema 2": "field schema", "fingerprint tensors=[]": "fingerprint.tensors", "deep nesting": "recursion limit",
}


@pytest.mark.parametrize("change", MANIFEST_DAMAGE)
def test_bad_manifest_is_one_line_naming_file_and_field(tmp_path: Path, change: str) -> None:
    damaged = _damage(corpus_document(), change)
    path = tmp_path / MANIFEST_NAME
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(HarnessError) as caught:
        read(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and MANIFEST_DAMAGE[change] in message, message


def test_manifest_read_refuses_a_folder_and_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "dir" / MANIFEST_NAME).mkdir(parents=True)
    with pytest.raises(HarnessError, match="is a folder"):
        read(tmp_path / "dir" / MANIFEST_NAME)
    os.mkfifo(tmp_path / MANIFEST_NAME)
    with pytest.raises(HarnessError, match="not a regular file"):  # and does not block on open
        read(tmp_path / MANIFEST_NAME)


# ------------------------------------------------------------------------------------------
# records
# ------------------------------------------------------------------------------------------

BAD_LINES = {
    "list": ("[1, 2]", "not a valid result record"),
    "number": ("5", "not a valid result record"),
    "empty object": ("{}", "field producer"),
    "no producer": (json.dumps({k: v for k, v in record().items() if k != "producer"}), "field producer"),
    "string producer": (json.dumps(record(producer="x")), "field producer"),
    "detail null": (json.dumps(record(detail=None)), "field detail"),
    "unknown status": (json.dumps(record(status="great")), "field status"),
    "duration text": (json.dumps(record(duration_s="slow")), "field duration_s"),
    "consumer without torch": (json.dumps(record(consumer={"device": "cpu"})), "field consumer.torch"),
    "not json": ("{not json", "not a valid result record"),
    "deep": ("[" * 5000 + "]" * 5000, "recursion limit"),
}


@pytest.mark.parametrize("name", BAD_LINES)
def test_bad_record_line_names_file_line_and_field(tmp_path: Path, name: str) -> None:
    text, needle = BAD_LINES[name]
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record()) + "\n\n" + text + "\n" + json.dumps(record()) + "\n")
    with pytest.raises(HarnessError) as caught:
        read_records([path])
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:3: ") and needle in message, message


def test_partial_last_line_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record()) + "\n" + json.dumps(record())[:40])
    with pytest.raises(HarnessError, match=rf"^{path}:2: the last line is cut off"):
        read_records([path])


def test_records_read_back_as_written(tmp_path: Path) -> None:
    rec = Record(**record(detail="line one\nline two", problem="unexpected fail"))
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.write(rec)
    assert read_records([tmp_path / "r.jsonl"]) == [dataclasses.asdict(rec)]
    assert rec.detail == "line one"


def test_record_constructor_rejects_an_unknown_status() -> None:
    with pytest.raises(pydantic.ValidationError):
        Record(**record(status="great"))


# ------------------------------------------------------------------------------------------
# output files: written whole, one writer at a time
# ------------------------------------------------------------------------------------------


def test_a_failed_run_leaves_the_previous_results(tmp_path: Path) -> None:
    path = tmp_path / "keep.jsonl"
    path.write_text("precious\n")
    with pytest.raises(RuntimeError):
        with RecordWriter(path) as writer:
            writer.write(Record(**record()))
            raise RuntimeError("the run failed")
    assert path.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.jsonl.lock", "keep.jsonl"]


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    first, second = OutputFile(path), OutputFile(path)
    first.write("a\n")
    with pytest.raises(HarnessError, match="another ckpt-harness run is writing it"):
        second.write("b\n")
    first.close()
    assert path.read_text() == "a\n"


def test_a_killed_writers_part_file_is_removed_by_the_next(tmp_path: Path) -> None:
    (tmp_path / ".r.jsonl.abc123.part").write_text("half a li")
    out = OutputFile(tmp_path / "r.jsonl")
    out.write("x\n")
    out.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.jsonl.lock", "r.jsonl"]


@pytest.mark.parametrize("where, needle", [("dir", "is a folder"), ("/proc/self/x", "under /proc"),
                                           ("file/sub.jsonl", "is a file, not a folder"),
                                           ("art/env/manifest.json", "inside the artifacts folder")])
def test_output_file_refusals(tmp_path: Path, where: str, needle: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "art" / "env").mkdir(parents=True)
    (tmp_path / "art" / "env" / MANIFEST_NAME).write_text("{}")
    with pytest.raises(HarnessError, match=needle):
        check_output_file(tmp_path / where, inputs=[tmp_path / "art"])


# ------------------------------------------------------------------------------------------
# produce's placement of environment folders
# ------------------------------------------------------------------------------------------


def test_replace_refuses_a_users_folder_and_a_link(tmp_path: Path) -> None:
    user = tmp_path / "env"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="was not made by ckpt-harness produce"):
        placement.check_ours(user)
    (tmp_path / "link").symlink_to(user)
    with pytest.raises(HarnessError, match="is a symbolic link"):
        placement.check_ours(tmp_path / "link")


def test_a_pre_marker_folder_is_ours_only_when_its_manifest_lists_every_file(tmp_path: Path) -> None:
    import shutil

    env = tmp_path / "env"
    shutil.copytree(CORPUS_MANIFESTS[-1].parent, env)
    (env / placement.MARKER).unlink(missing_ok=True)
    placement.check_ours(env)  # every file listed: ours
    (env / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="does not list notes.txt"):
        placement.check_ours(env)


def test_stale_staging_of_a_dead_run_is_cleaned_and_nothing_else(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale, live, foreign = (tmp_path / f".env.{dead}.ab12", tmp_path / f".env.{os.getppid()}.cd34",
                            tmp_path / ".env.999.user")
    for folder, pid in ((stale, dead), (live, str(os.getppid()))):
        folder.mkdir()
        (folder / placement.STAGING_MARKER).write_text(pid)
    foreign.mkdir()
    assert placement.clean_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and foreign.exists()


# ------------------------------------------------------------------------------------------
# escaping
# ------------------------------------------------------------------------------------------


def test_terminal_text_shows_markup_literally_and_drops_controls() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(terminal("[default] [/x] [bold]b\x1b[2J\x1b[8m\x9bz"))
    assert console.export_text().strip() == "[default] [/x] [bold]b[2J[8mz"
    assert strip_controls("a\x00b\x07c\nd\te\x85") == "ab" "c\nd\te"


HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) <javascript:x> <img src=x onerror=y> *em* `c` a|b"


def test_markdown_text_has_no_html_links_or_table_breaks() -> None:
    from markdown_it import MarkdownIt  # rich's own Markdown parser; commonmark passes raw HTML through

    html = MarkdownIt("commonmark").enable("table").render(f"| a | b |\n|---|---|\n| {markdown(HOSTILE)} | z |\n")
    assert "<script" not in html and "<img" not in html and "href" not in html and "<em>" not in html
    assert html.count("<td>") == 2  # the | inside the text did not split the cell
    unescaped = MarkdownIt("commonmark").render(HOSTILE)
    assert "<script" in unescaped and 'href="javascript' not in unescaped  # the parser is not doing it for us


def _hostile_results(tmp_path: Path) -> Path:
    hostile = record(status="fail", load_mode="default", detail="[/x] [default] \x1b[2J\x1b[8m " + HOSTILE,
                     case="<script>alert(2)</script>", format="fmt[/b]", check="check\x1b]0;title\x07")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(hostile) + "\n")
    return path


def test_summary_shows_record_text_literally_and_without_control_sequences(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    from harness import cli

    assert cli.main(["summary", str(_hostile_results(tmp_path))]) == 1  # an unexpected fail: a finding
    out = capsys.readouterr().out
    assert "[default]" in out and "[/x]" in out and "fmt[/b]" in out
    assert "\x1b[2J" not in out and "\x1b]0;" not in out and "\x1b[8m" not in out


def test_report_escapes_record_text_in_markdown_html_and_junit(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from harness import cli

    assert cli.main(["report", str(_hostile_results(tmp_path)), "--out", str(tmp_path / "out")]) == 1
    markdown_text = (tmp_path / "out" / "summary.md").read_text()
    html_text = (tmp_path / "out" / "index.html").read_text()
    for text in (markdown_text, html_text):
        assert "<script>alert" not in text and "<img" not in text and "\x1b" not in markdown_text
    assert 'href="javascript' not in html_text and "](javascript" not in markdown_text.replace("\\](", "")
    assert "&lt;script&gt;alert(2)" in html_text  # jinja2 autoescape, shown, not run
    ET.parse(tmp_path / "out" / "junit.xml")  # control characters would make it invalid XML
