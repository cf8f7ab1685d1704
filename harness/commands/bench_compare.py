"""``ckpt-harness bench-compare``: flag benchmarks whose median got slower beyond a threshold and the noise."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.commands import EXIT_FINDINGS, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, help="JSON of the reference run (ckpt-harness bench --json)")
    parser.add_argument("new", type=Path, help="JSON of the run to judge (another release, or a rerun)")
    parser.add_argument("--threshold", default="10%",
                        help="slowdown of the median that counts, if also beyond the runs' own spread (default: 10%%)")
    parser.add_argument("--relative", action="store_true",
                        help="judge each format's time relative to its baseline in the same run (for runs on a "
                             "machine whose speed drifted between them; the noise is then the sum of both)")


def _percent(value: float) -> str:
    return f"{value * 100:+.0f}%"


def comparison_table(comparisons: list, title: str) -> Table:
    from harness.bench.compare import REGRESSION, baseline_change
    from harness.escaping import terminal

    table = Table(title=terminal(title), title_justify="left")
    for column in ("size", "format", "operation", "cache", "old median s", "new median s", "change", "noise",
                   "A/A floor", "baseline change", "verdict"):
        table.add_column(column)
    for c in sorted(comparisons, key=lambda c: (c.fields["size_bytes"], c.fields["format"], c.fields["operation"])):
        moved = baseline_change(comparisons, c) if c.status != "baseline" else None
        style = "bold red" if c.status == REGRESSION else ""
        table.add_row(*(terminal(str(v)) for v in (c.old["size"], c.fields["format"], c.fields["operation"],
                                                    c.fields["cache"])),
                      f"{c.old['median']:.4f}", f"{c.new['median']:.4f}", _percent(c.change), f"±{c.noise * 100:.0f}%",
                      "-" if c.floor is None else f"±{c.floor * 100:.1f}%", "-" if moved is None else _percent(moved),
                      c.status, style=style)
    return table


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.bench import compare, results
    from harness.commands.bench import wide_console

    threshold = compare.parse_threshold(args.threshold)
    old, new = results.read_json(args.old), results.read_json(args.new)
    comparisons = compare.compare(results.rows(old, str(args.old)), results.rows(new, str(args.new)), threshold)
    if args.relative:
        comparisons = compare.relative_to_baselines(comparisons, threshold)
    title = (f"{args.old} (torch {old['machine_info'].get('torch')}) → {args.new} (torch "
             f"{new['machine_info'].get('torch')}); regression: slower by > {threshold * 100:.0f}% and > noise"
             f"{', relative to the baselines' if args.relative else ''}")
    wide_console().print(comparison_table(comparisons, title))
    found = compare.regressions(comparisons)
    for c in found:
        console.print(f"regression: {c.fields['format']} {c.fields['operation']} {c.old['size']} ({c.fields['cache']}) "
                      f"{_percent(c.change)} slower, noise ±{c.noise * 100:.0f}%", highlight=False, markup=False)
    return EXIT_FINDINGS if found else 0


register("bench-compare", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=61)
