"""``ckpt-harness bench-plot``: draw throughput by format and release, with baselines, from bench JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("json", type=Path, nargs="+", help="files written by ckpt-harness bench --json")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the PNG files (default: reports)")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.bench.plots import render
    from harness.bench.results import read_json

    for path in args.json:
        read_json(path)  # bad input is one line before anything is drawn
    for path in render(args.json, args.out):
        console.print(f"wrote {path}", highlight=False, markup=False)
    return 0


register("bench-plot", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=62)
