"""Terminal summaries of result records (rich tables)."""

from __future__ import annotations

import collections
import fnmatch
from typing import Any, Iterable, Optional

from rich.console import Console
from rich.table import Table

from harness.escaping import terminal as _t

#: what a record counts as in summaries: its status, or xfail / xpass when an expectation matched
OUTCOMES = ("pass", "fail", "error", "skip", "xfail", "xpass")
STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow", "xfail": "cyan",
         "xpass": "bold red"}


def outcome(record: dict[str, Any]) -> str:
    """pass | fail | error | skip, or xfail (an expected failure) / xpass (an expected failure that passed)."""
    expected = record.get("expected")
    if expected and expected.get("unexpected_pass"):
        return "xpass"
    if expected:
        return "xfail"
    return record["status"]


def judge_all(records: Iterable[dict[str, Any]], known: list[Any]) -> None:
    """Judge every record again (the expectations may have changed since the run), in place.

    Same verdicts as :func:`harness.expectations.judge` record by record, which it calls, but each
    record is judged against only the entries whose case/format/check/load-mode patterns match it,
    found with one pattern match per entry and distinct field value (a matrix has ~25,000 records
    and a few dozen distinct values per field, so matching every entry against every record is
    most of a report's time).
    """
    from harness.expectations import PATTERN_FIELDS, judge

    field_matches: dict[tuple[str, str], frozenset[int]] = {}

    def candidates(field: str, value: str) -> frozenset[int]:
        key = (field, value)
        if key not in field_matches:
            field_matches[key] = frozenset(i for i, e in enumerate(known)
                                           if fnmatch.fnmatchcase(value, getattr(e, field)))
        return field_matches[key]

    everyone = frozenset(range(len(known)))
    for record in records:
        record.pop("expected", None)
        chosen = everyone
        for field in PATTERN_FIELDS:
            chosen = chosen & candidates(field, str(record.get(field, "")))
            if not chosen:
                break
        record["problem"] = judge(record, [known[i] for i in sorted(chosen)])


def weight(record: dict[str, Any]) -> int:
    """How many outcomes a record stands for: 1, or a folded record's ``count``."""
    return record.get("count") or 1


def env_label(side: dict[str, Any]) -> str:
    """``torch/device`` of a record's producer or consumer: the rows and columns of the grids."""
    return f"{side['torch']}/{side['device']}"


_env = env_label


def grid_counts(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], collections.Counter]:
    """Outcome counts per (format, producer, consumer) cell."""
    cells: dict[tuple[str, str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        cells[(r["format"], _env(r["producer"]), _env(r["consumer"]))][outcome(r)] += weight(r)
    return cells


def print_summary(records: Iterable[dict[str, Any]], console: Console) -> None:
    """Per-format outcome counts, then every record that fails the run, with its one-line detail."""
    records = list(records)
    table = Table(title="checkpoint-harness results")
    table.add_column("format")
    for name in OUTCOMES:
        table.add_column(name, justify="right", style=STYLE[name])
    by_format: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for record in records:
        by_format[record["format"]][outcome(record)] += weight(record)
    totals: collections.Counter = collections.Counter()
    for fmt, counts in sorted(by_format.items()):
        totals.update(counts)
        table.add_row(_t(fmt), *(str(counts.get(o, 0)) for o in OUTCOMES))
    table.add_row("[b]total[/b]", *(f"[b]{totals.get(o, 0)}[/b]" for o in OUTCOMES))
    console.print(table)
    problems = [r for r in records if r.get("problem")]
    for record in problems[:50]:
        console.print(f"[{STYLE[outcome(record)]}]{_t(record['problem'].upper())}[/] "
                      f"{_t(record['case'])}/{_t(record['format'])} {_t(record['check'])} "
                      f"{_t('[' + record['load_mode'] + ']')} {_t(_env(record['producer']))} → "
                      f"{_t(_env(record['consumer']))}: {_t(record['detail'])}", highlight=False, soft_wrap=True)
    if len(problems) > 50:
        console.print(f"... and {len(problems) - 50} more")


def print_grid(records: list[dict[str, Any]], console: Console) -> None:
    """Per format, a producer × consumer grid: pass/fail/error/skip counts, then expected failures."""
    producers = sorted({_env(r["producer"]) for r in records})
    consumers = sorted({_env(r["consumer"]) for r in records})
    cells = grid_counts(records)
    for fmt in sorted({r["format"] for r in records}):
        table = Table(title=f"{_t(fmt)}: producer ↓ × consumer →   pass/fail/error/skip (+expected failures)",
                      title_justify="left")
        table.add_column("producer")
        for consumer in consumers:
            table.add_column(_t(consumer), justify="center")
        for producer in producers:
            table.add_row(_t(producer), *(_cell(cells.get((fmt, producer, c))) for c in consumers))
        console.print(table)


def _cell(counts: Any) -> str:
    if not counts:
        return "[dim]—[/dim]"
    bad = counts.get("fail") or counts.get("error") or counts.get("xpass")
    colour = "red" if bad else "green" if counts.get("pass") else "yellow"
    text = "/".join(str(counts.get(s, 0)) for s in ("pass", "fail", "error", "skip"))
    extra = ((f" +{counts['xfail']}x" if counts.get("xfail") else "")
             + (f" {counts['xpass']}XP" if counts.get("xpass") else ""))
    return f"[{colour}]{text}{extra}[/]"


WEIGHTS_ONLY_MODES = ("default", "weights_only", "unsafe")


def weights_only_panel(records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The weights_only panel's data, or None without pickle loads: ``consumers`` (torch releases),
    ``defaults`` (release → default weights_only), ``rows`` (format → per consumer, per mode
    ``(passed, tried)`` or None) and ``needs`` (format → safe globals weights_only asked for)."""
    loads = [r for r in records if r["check"] == "load" and r["load_mode"] in WEIGHTS_ONLY_MODES]
    if not loads:
        return None
    consumers = sorted({r["consumer"]["torch"] for r in loads})
    defaults = {r["consumer"]["torch"]: r["consumer"].get("default_weights_only") for r in loads}
    counts: dict[tuple[str, str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    needs: dict[str, set[str]] = collections.defaultdict(set)
    for r in loads:
        cell = counts[(r["format"], r["consumer"]["torch"], r["load_mode"])]
        cell[0] += r["status"] == "pass"
        cell[1] += r["status"] != "skip"
        if r["detail"].startswith("needs safe globals "):
            needs[r["format"]].update(r["detail"][len("needs safe globals "):].split(" | ")[0].split(", "))
    rows = {fmt: [[tuple(counts[(fmt, c, m)]) if (fmt, c, m) in counts else None for m in WEIGHTS_ONLY_MODES]
                  for c in consumers] for fmt in sorted({r["format"] for r in loads})}
    return {"consumers": consumers, "defaults": defaults, "rows": rows,
            "needs": {fmt: sorted(names) for fmt, names in sorted(needs.items())}}


def print_weights_only(records: list[dict[str, Any]], console: Console) -> None:
    """Per consumer release: what the default load is, how each pickle format fares in each load
    mode (loads that passed / all load records), and the globals weights_only asked for."""
    panel = weights_only_panel(records)
    if panel is None:
        return
    table = Table(title="weights_only: loads passed/tried per mode (default · weights_only · unsafe)",
                  title_justify="left")
    table.add_column("format")
    for consumer in panel["consumers"]:
        table.add_column(f"{_t(consumer)}\ndefault weights_only={panel['defaults'][consumer]}", justify="center")
    for fmt, cells in panel["rows"].items():
        table.add_row(_t(fmt), *(" · ".join(f"{p[0]}/{p[1]}" if p else "—" for p in parts) for parts in cells))
    console.print(table)
    for fmt, names in panel["needs"].items():
        console.print(f"[b]{_t(fmt)}[/b] needs safe globals: {_t(', '.join(sorted(names)))}", highlight=False,
                      soft_wrap=True)
