"""The report's view-model, built from result records only (so a partial matrix renders too).

Outcomes and cell counts come from :mod:`harness.summary` and expectations from
:mod:`harness.expectations`; this module only arranges them: per format a producer × consumer
grid of cells, each with a state (pass, expected failure, failure, skip, missing) and the
failing records grouped by what went wrong; the weights_only panel; the sessions seen.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

from packaging.version import InvalidVersion, Version

from harness.expectations import Expectation
from harness.summary import env_label, grid_counts, judge_all, outcome, weight, weights_only_panel

#: cell states, worst first; a cell takes the worst state any of its records has
STATES = ("fail", "xfail", "pass", "skip", "missing")
STATE_LABELS = {"fail": "failure", "xfail": "expected failure", "pass": "pass", "skip": "skip", "missing": "missing"}


@dataclasses.dataclass
class Group:
    """Records of one cell that went wrong the same way."""

    outcome: str  # fail | error | xpass | xfail
    check: str
    load_mode: str
    detail: str
    cases: list[str]
    reason: str = ""  # the expectation's reason for an expected failure; the problem otherwise


@dataclasses.dataclass
class Cell:
    state: str
    counts: dict[str, int]
    problems: list[Group] = dataclasses.field(default_factory=list)
    expected: list[Group] = dataclasses.field(default_factory=list)

    @property
    def summary(self) -> str:
        """``pass/fail/error/skip`` counts plus expected failures, as the terminal grid shows them."""
        if self.state == "missing":
            return "—"
        text = "/".join(str(self.counts.get(s, 0)) for s in ("pass", "fail", "error", "skip"))
        extra = f" +{self.counts['xfail']}x" if self.counts.get("xfail") else ""
        return text + extra + (f" {self.counts['xpass']}XP" if self.counts.get("xpass") else "")


@dataclasses.dataclass
class Grid:
    format: str
    rows: list[tuple[str, list[Cell]]]

    @property
    def state(self) -> str:
        states = {cell.state for _, cells in self.rows for cell in cells}
        return next((s for s in STATES if s in states), "missing")


@dataclasses.dataclass
class Session:
    """An environment that produced or consumed the records."""

    role: str
    label: str
    env: dict[str, Any]
    records: int
    sources: list[str]


@dataclasses.dataclass
class View:
    producers: list[str]
    consumers: list[str]
    grids: list[Grid]
    weights_only: Optional[dict[str, Any]]
    sessions: list[Session]
    totals: dict[str, int]
    problems: int
    sources: list[str]
    #: one small dict per record (format, producer, consumer, case, check, load_mode, outcome, problem,
    #: detail, message), for renderers that list every record (JUnit)
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    charts: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {"title", "png_base64"}
    chart_note: str = ""

    def records_by_format(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for result in self.results:
            grouped[result["format"]].append(result)
        return dict(grouped)


def read(paths: list[Path]) -> list[dict[str, Any]]:
    """Validated records from JSON-lines files, each tagged with the file it came from; bad input is one line."""
    from harness.records import iter_records

    records = []
    for path in paths:
        for record in iter_records(Path(path)):
            records.append({**dataclasses.asdict(record), "_source": Path(path).name})
    return records


def rejudge(records: list[dict[str, Any]], known: list[Expectation]) -> None:
    """Judge every record again: the expectations may have changed since the run."""
    judge_all(records, known)


def build(records: list[dict[str, Any]], sources: list[str]) -> View:
    """The view-model of already judged records."""
    producers = sorted({env_label(r["producer"]) for r in records}, key=release_order)
    consumers = sorted({env_label(r["consumer"]) for r in records}, key=release_order)
    counts = grid_counts(records)
    by_cell: dict[tuple[str, str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        by_cell[(r["format"], env_label(r["producer"]), env_label(r["consumer"]))].append(r)
    grids = [Grid(fmt, [(p, [_cell(counts.get((fmt, p, c)), by_cell.get((fmt, p, c), [])) for c in consumers])
                        for p in producers])
             for fmt in sorted({r["format"] for r in records})]
    totals: collections.Counter = collections.Counter()
    for r in records:
        totals[outcome(r)] += weight(r)
    return View(producers, consumers, grids, weights_only_panel(records), _sessions(records), dict(totals),
                sum(1 for r in records if r.get("problem")), sources, [_result(r) for r in records])


def _result(r: dict[str, Any]) -> dict[str, Any]:
    kind = outcome(r)
    message = r.get("problem") or ((r.get("expected") or {}).get("reason") if kind == "xfail" else "") or ""
    return {"format": r["format"], "producer": env_label(r["producer"]), "consumer": env_label(r["consumer"]),
            "case": r["case"], "check": r["check"], "load_mode": r["load_mode"], "outcome": kind,
            "problem": r.get("problem"), "detail": r.get("detail", ""), "message": message, "count": weight(r)}


def release_order(label: str) -> tuple[Any, ...]:
    """Sort ``torch/device`` labels by release (2.5.1 before 2.14.1), then device."""
    torch, _, device = label.partition("/")
    try:
        return (0, Version(torch), device)
    except InvalidVersion:
        return (1, torch, device)


def _cell(counts: Optional[collections.Counter], records: list[dict[str, Any]]) -> Cell:
    if not counts:
        return Cell("missing", {})
    if counts.get("fail") or counts.get("error") or counts.get("xpass"):
        state = "fail"
    else:
        state = next(s for s in ("xfail", "pass", "skip") if counts.get(s)) if counts else "missing"
    problems = _groups([r for r in records if r.get("problem")])
    expected = _groups([r for r in records if outcome(r) == "xfail"])
    return Cell(state, dict(counts), problems, expected)


def _groups(records: list[dict[str, Any]]) -> list[Group]:
    """Records grouped by (outcome, check, load mode, detail), with the cases each group covers."""
    grouped: dict[tuple[str, str, str, str], Group] = {}
    for r in records:
        key = (outcome(r), r["check"], r["load_mode"], r["detail"])
        reason = (r.get("expected") or {}).get("reason", "") if key[0] == "xfail" else (r.get("problem") or "")
        group = grouped.setdefault(key, Group(key[0], key[1], key[2], key[3], [], reason))
        if r["case"] not in group.cases:
            group.cases.append(r["case"])
    return sorted(grouped.values(), key=lambda g: (g.check, g.load_mode, g.detail))


def _sessions(records: list[dict[str, Any]]) -> list[Session]:
    found: dict[tuple[str, str], Session] = {}
    for r in records:
        for role in ("producer", "consumer"):
            env = r[role]
            key = (role, json.dumps(env, sort_keys=True))
            session = found.setdefault(key, Session(role, env_label(env), env, 0, []))
            session.records += weight(r)
            if r.get("_source") and r["_source"] not in session.sources:
                session.sources.append(r["_source"])
    return sorted(found.values(), key=lambda s: (s.role != "consumer", s.label))
