"""Result records: one JSON line per (artifact, check, load mode). Reports read only these.

A :class:`Record` is a pydantic dataclass: it is validated when made and when read back
(:func:`read_records`), and its JSON schema is published with the manifest's
(:mod:`harness.contracts`). Results files are written by :class:`RecordWriter`: under a lock,
into a temporary file beside the target that replaces it only when the run completes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional

import pydantic
from pydantic import ConfigDict, TypeAdapter, ValidationError

from harness.contracts import EnvBrief, describe_error
from harness.errors import HarnessError
from harness.outputs import OutputFile

STATUSES = ("pass", "fail", "error", "skip")
Status = Literal["pass", "fail", "error", "skip"]


@pydantic.dataclasses.dataclass(config=ConfigDict(extra="ignore"))
class Record:
    """The outcome of one check of one artifact under one load mode."""

    producer: EnvBrief
    consumer: EnvBrief
    case: str
    format: str
    check: str
    load_mode: str
    status: Status
    detail: str
    duration_s: float
    artifact: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: the known incompatibility this outcome matches: {"id", "reason"[, "unexpected_pass"]}
    expected: Optional[dict[str, Any]] = None
    #: why this record fails the run ("unexpected fail", "unexpected pass ..."), or None
    problem: Optional[str] = None
    #: how many outcomes this record stands for: a folded record (the checks a later load mode
    #: leaves to the first, say) counts as ``count`` records of its status in every summary
    count: Annotated[int, pydantic.Field(ge=1)] = 1
    #: the artifact this outcome was computed on, where this artifact's file is byte-identical to it and the
    #: check declares that such files get the same verdict (``harness.consume.Reuse``): it did not run again
    reused_from: Optional[str] = None

    def __post_init__(self) -> None:
        self.detail = one_line(self.detail)


RECORD_ADAPTER: TypeAdapter[Record] = TypeAdapter(Record)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def one_line(text: str, limit: int = 400) -> str:
    """First line of ``text`` without terminal colour codes, trimmed to ``limit`` characters."""
    lines = ANSI_ESCAPE.sub("", str(text)).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    return one_line(f"{type(exc).__name__}: {one_line(str(exc))}")


class RecordWriter:
    """Writes records to a JSON-lines file, flushing each line.

    The file is written as a whole or not at all: lines go to a hidden temporary file beside
    ``path`` that replaces it when the writer is closed after a run that did not raise (see
    :class:`harness.outputs.OutputFile`); a second writer of the same path while this one is
    open is refused with one line. ``path=None`` keeps the records in memory only.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._output = OutputFile(path) if path is not None else None
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)
        if self._output:
            self._output.write(json.dumps(dataclasses.asdict(record), sort_keys=True) + "\n")

    def close(self, completed: bool = True) -> None:
        """Put the file in place (``completed``) or drop what was written."""
        if self._output:
            self._output.close(completed)

    def __enter__(self) -> RecordWriter:
        if self._output:
            self._output.open()
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.close(completed=kind is None)


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """All records from JSON-lines files, validated; any problem is one line naming the file, line and field."""
    out: list[dict[str, Any]] = []
    for path in paths:
        out.extend(dataclasses.asdict(record) for record in iter_records(Path(path)))
    return out


def iter_records(path: Path) -> Iterable[Record]:
    """The validated records of one results file, in order."""
    for number, line, last in _lines(path):
        try:
            yield RECORD_ADAPTER.validate_json(line)
        except ValidationError as exc:
            if last and not line.endswith(b"\n") and exc.errors()[0]["type"] == "json_invalid":
                raise HarnessError(f"{path}:{number}: the last line is cut off (a run that was interrupted?); "
                                   "delete that line or re-run consume") from None
            raise HarnessError(f"{path}:{number}: not a valid result record: {describe_error(exc)}") from None


def _lines(path: Path) -> Iterable[tuple[int, bytes, bool]]:
    """``(line number, line, is it the last)`` for each non-blank line of a results file."""
    from harness.outputs import check_readable_file

    check_readable_file(path, "results file", "run `ckpt-harness consume` first")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    lines = data.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield number, line, number == len(lines)
