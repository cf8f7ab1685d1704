"""``ckpt-harness report``: HTML, Markdown, JSON and JUnit reports from result records.

Writes ``index.html`` (self-contained), ``summary.md`` (also appended to ``$GITHUB_STEP_SUMMARY``
when set), ``summary.json`` and ``junit.xml`` into ``--out``. Exit status as ``summary``: 1 when
any record is a problem, so a CI step can render first and fail after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, nargs="+", help="JSON-lines files written by consume")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the reports (default: reports/)")
    parser.add_argument("--bench", type=Path, nargs="+", default=[], metavar="JSON",
                        help="pytest-benchmark JSON files to chart in the HTML page")
    _options.expectations_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
    from harness import report
    from harness.escaping import terminal
    from harness.outputs import check_output_folder
    from harness.report import model

    check_output_folder(args.out)
    records = model.read(args.results)
    model.rejudge(records, _options.expectations(args))
    view = model.build(records, [p.name for p in args.results])
    if args.bench:
        from harness.report.charts import charts

        view.charts, note = charts(args.bench)
        view.chart_note = f"{', '.join(p.name for p in args.bench)}: {note}."
    written = report.write(view, args.out)
    for name, path in written.items():
        console.print(f"[dim]{name}:[/dim] {terminal(str(path))}", highlight=False)
    return _options.exit_status(records, console)


register("report", __doc__.split(": ", 1)[1].split("\n")[0].rstrip("."), add_arguments, run, order=45)
