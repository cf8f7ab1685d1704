"""Terminal summaries of result records (rich tables)."""

from __future__ import annotations

import collections
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

from harness.records import STATUSES

STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}


def counts_by_format(records: Iterable[dict[str, Any]]) -> dict[str, collections.Counter]:
    """``{format: Counter(status -> n)}``."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for record in records:
        table[record["format"]][record["status"]] += 1
    return dict(table)


def print_summary(records: list[dict[str, Any]], console: Console) -> None:
    """Per-format status counts, then every fail and error with its one-line detail."""
    table = Table(title="checkpoint-harness results", show_lines=False)
    table.add_column("format")
    for status in STATUSES:
        table.add_column(status, justify="right", style=STYLE[status])
    totals: collections.Counter = collections.Counter()
    for fmt, counts in sorted(counts_by_format(records).items()):
        totals.update(counts)
        table.add_row(fmt, *(str(counts.get(s, 0)) for s in STATUSES))
    table.add_row("[b]total[/b]", *(f"[b]{totals.get(s, 0)}[/b]" for s in STATUSES))
    console.print(table)
    bad = [r for r in records if r["status"] in ("fail", "error")]
    for record in bad[:50]:
        console.print(f"[{STYLE[record['status']]}]{record['status'].upper()}[/] {record['case']}/{record['format']} "
                      f"{record['check']} [{record['load_mode']}] {record['producer']['torch']}→"
                      f"{record['consumer']['torch']}: {record['detail']}", highlight=False, soft_wrap=True)
    if len(bad) > 50:
        console.print(f"... and {len(bad) - 50} more fail/error records")


def print_grid(records: list[dict[str, Any]], console: Console) -> None:
    """Per format, a producer × consumer grid of pass/fail/error/skip counts."""
    producers = sorted({r["producer"]["torch"] + "/" + r["producer"]["device"] for r in records})
    consumers = sorted({r["consumer"]["torch"] + "/" + r["consumer"]["device"] for r in records})
    cells: dict[tuple[str, str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        key = (r["format"], r["producer"]["torch"] + "/" + r["producer"]["device"],
               r["consumer"]["torch"] + "/" + r["consumer"]["device"])
        cells[key][r["status"]] += 1
    for fmt in sorted({r["format"] for r in records}):
        table = Table(title=f"{fmt}: producer ↓ × consumer →  (pass/fail/error/skip)", title_justify="left")
        table.add_column("producer")
        for consumer in consumers:
            table.add_column(consumer, justify="center")
        for producer in producers:
            table.add_row(producer, *(_cell(cells.get((fmt, producer, c))) for c in consumers))
        console.print(table)


def _cell(counts: Any) -> str:
    if not counts:
        return "[dim]—[/dim]"
    colour = "red" if counts.get("fail") or counts.get("error") else "green" if counts.get("pass") else "yellow"
    return f"[{colour}]" + "/".join(str(counts.get(s, 0)) for s in STATUSES) + "[/]"
