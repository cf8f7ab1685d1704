"""Rich tables of benchmark rows: throughput beside its baseline, spread and peak RSS."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _floor(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _gbps(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def results_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One line per benchmark: median, spread, A/A noise floor, GB/s, fraction of its baseline and of memcpy,
    peak RSS."""
    table = Table(title=title, title_justify="left")
    for column in ("size", "format", "operation", "cache", "median s", "spread", "A/A floor", "GB/s",
                   "of baseline", "of memcpy", "peak RSS / file"):
        table.add_column(column, justify="left" if column in ("size", "format", "operation", "cache") else "right")
    for row in rows:
        baseline = f"{_percent(row.get('fraction_of_baseline'))} {row['baseline']}" \
            if row["operation"] != row["baseline"] else "-"
        table.add_row(row["size"], row["format"], row["operation"], row["cache"], f"{row['median']:.4f}",
                      _percent(row.get("spread")), _floor(row.get("aa_noise")), _gbps(row.get("throughput")), baseline,
                      _percent(row.get("fraction_of_memcpy")), _times(row.get("peak_rss_multiple")))
    return table


def print_results(rows: list[dict[str, Any]], console: Console, title: str) -> None:
    console.print(results_table(rows, title))
