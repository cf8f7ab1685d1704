"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable

from rich.console import Console

from harness.commands import EXIT_FINDINGS


def expectations_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expectations", type=Path, metavar="TOML",
                        help="known incompatibilities (default: the packaged harness/data/expected.toml)")


def expectations(args: argparse.Namespace) -> list:
    """The expectations named by ``--expectations``, else the packaged ones."""
    from harness import expectations as known

    return known.load(args.expectations) if args.expectations else known.load()


def plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import MODULE first so it can register cases, formats or checks (repeatable)")


def jobs_argument(parser: argparse.ArgumentParser, work: str = "consume artifacts") -> None:
    """``--jobs N``: do ``work`` in N worker processes (default: the core count)."""
    from harness.consume_pool import cores

    parser.add_argument("--jobs", type=_positive, default=cores(), metavar="N",
                        help=f"{work} in N worker processes (default: the core count, here %(default)s)")


def start_workers_early(args: argparse.Namespace) -> None:
    """Start produce's workers' server before this process imports torch, so that both import at once; not
    for ``--jobs 1`` or a single ``--case`` (produced in this process)."""
    if args.jobs > 1 and not (args.cases and len(args.cases) == 1):
        from harness.produce_pool import start_server

        start_server()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def selection_arguments(parser: argparse.ArgumentParser) -> None:
    plugin_argument(parser)
    parser.add_argument("--case", dest="cases", action="append", help="only this case (repeatable)")
    parser.add_argument("--format", dest="formats", action="append", help="only this format (repeatable)")
    parser.add_argument("--device", default="cpu", help="device to build and save on (default: cpu)")


def progress(console: Console, verb: str) -> Callable[[str], None]:
    from harness.escaping import terminal

    return lambda label: console.print(f"[dim]{verb} {terminal(label)}[/dim]", highlight=False)


def report(records: list, console: Console) -> int:
    """Print the summary table of ``records`` and return the exit status they call for."""
    from harness.summary import print_summary

    dicts = [dataclasses.asdict(r) for r in records]
    print_summary(dicts, Console())
    return exit_status(dicts, console)


def exit_status(dicts: list, console: Console) -> int:
    """1 when there are no records or any record is a problem, else 0."""
    if not dicts:
        console.print("ckpt-harness: no records were produced", highlight=False)
        return EXIT_FINDINGS
    return EXIT_FINDINGS if any(r.get("problem") for r in dicts) else 0
