"""``ckpt-harness summary``: producer × consumer grids from result records."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, nargs="+", help="JSON-lines files written by consume")
    _options.expectations_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.records import read_records
    from harness.summary import judge_all, print_grid, print_summary, print_weights_only

    records = read_records(args.results)
    known = _options.expectations(args)
    judge_all(records, known)  # judged again: the expectations may have changed since the run
    print_grid(records, Console())
    print_weights_only(records, Console())
    print_summary(records, Console())
    return _options.exit_status(records, console)


register("summary", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=40)
