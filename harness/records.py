"""Result records: one JSON line per (artifact, check, load mode). Reports read only these."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import IO, Any, Iterable, Optional

STATUSES = ("pass", "fail", "error", "skip")


@dataclasses.dataclass
class Record:
    """The outcome of one check of one artifact under one load mode."""

    producer: dict[str, Any]
    consumer: dict[str, Any]
    case: str
    format: str
    check: str
    load_mode: str
    status: str
    detail: str
    duration_s: float
    artifact: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: the known incompatibility this outcome matches: {"id", "reason"[, "unexpected_pass"]}
    expected: Optional[dict[str, Any]] = None
    #: why this record fails the run ("unexpected fail", "unexpected pass ..."), or None
    problem: Optional[str] = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        self.detail = one_line(self.detail)


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
    """Writes records to a JSON-lines file (replacing it), flushing each line."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._stream: Optional[IO[str]] = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(path, "w")
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)
        if self._stream:
            self._stream.write(json.dumps(dataclasses.asdict(record), sort_keys=True) + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._stream:
            self._stream.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """All records from JSON-lines files."""
    out: list[dict[str, Any]] = []
    for path in paths:
        with open(path) as stream:
            out.extend(json.loads(line) for line in stream if line.strip())
    return out
