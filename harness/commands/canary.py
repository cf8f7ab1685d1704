"""``ckpt-harness canary``: does this torch's load run code hidden in a pickle? (default, weights_only=True/False)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, required=True, help="JSON-lines file to write the canary records to")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one load may take (default: 120)")
    _options.expectations_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
    from harness import canary
    from harness.records import RecordWriter

    if args.results.is_dir():
        raise HarnessError(f"{args.results} is a folder; --results takes a JSON-lines file path")
    if args.timeout <= 0:
        raise HarnessError("--timeout must be a positive number of seconds")
    known = _options.expectations(args)
    outcomes = canary.run_canary(args.timeout)
    with RecordWriter(args.results) as writer:
        for record in canary.records(outcomes, known):
            writer.write(record)
    _print(writer.records, console)
    return _options.exit_status([dataclasses.asdict(r) for r in writer.records], console)


def _print(records: list, console: Console) -> None:
    out = Console()
    for record in records:
        style = {"pass": "green", "skip": "yellow"}.get(record.status, "bold red")
        expected = f" (expected: {record.expected['id']})" if record.expected else ""
        out.print(f"[{style}]{record.status:5}[/] {record.load_mode:12} {record.detail}{expected}", highlight=False,
                  soft_wrap=True)
    torch = records[0].consumer["torch"] if records else "?"
    default = next((r for r in records if r.load_mode == "default"), None)
    if default is not None and default.status == "fail":
        out.print(f"[bold white on red] WARNING: torch {torch}'s default torch.load executes code from the checkpoint; "
                  "pass weights_only=True for files you did not write [/]", highlight=False, soft_wrap=True)


register("canary", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=60)
