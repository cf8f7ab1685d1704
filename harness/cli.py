"""The ``ckpt-harness`` command line: produce, consume, roundtrip."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.records import RecordWriter

EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckpt-harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    produce = commands.add_parser("produce", help="save every case in every format into ARTIFACTS/<env-id>/")
    produce.add_argument("--out", type=Path, required=True, help="artifacts folder (shared by all environments)")
    _selection_arguments(produce)
    produce.add_argument("--replace", action="store_true", help="replace this environment's existing folder")
    produce.add_argument("--corpus", action="store_true", help="only the small cases of the frozen corpus")

    consume = commands.add_parser("consume", help="load every artifact found and check it against its manifest")
    consume.add_argument("artifacts", type=Path, nargs="+", help="folders written by produce")
    consume.add_argument("--results", type=Path, required=True, help="JSON-lines file to write records to")
    consume.add_argument("--device", default="cpu", help="device to load onto (default: cpu)")
    _plugin_argument(consume)
    _expectations_argument(consume)

    roundtrip = commands.add_parser("roundtrip", help="produce and consume in a temporary folder; print a summary")
    _selection_arguments(roundtrip)
    roundtrip.add_argument("--results", type=Path, help="also keep the records in this JSON-lines file")
    _expectations_argument(roundtrip)

    summary = commands.add_parser("summary", help="producer × consumer grids from result records")
    summary.add_argument("results", type=Path, nargs="+", help="JSON-lines files written by consume")
    _expectations_argument(summary)

    commands.add_parser("list", help="list the registered cases, formats and checks")
    return parser


def _expectations_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expectations", type=Path, metavar="TOML",
                        help="known incompatibilities (default: the packaged harness/data/expected.toml)")


def _expectations(args: argparse.Namespace) -> list:
    from harness import expectations

    return expectations.load(args.expectations) if args.expectations else expectations.load()


def _plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import MODULE first so it can register cases, formats or checks (repeatable)")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    _plugin_argument(parser)
    parser.add_argument("--case", dest="cases", action="append", help="only this case (repeatable)")
    parser.add_argument("--format", dest="formats", action="append", help="only this format (repeatable)")
    parser.add_argument("--device", default="cpu", help="device to build and save on (default: cpu)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 clean, 1 findings, 2 bad input)."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        load_plugins(getattr(args, "plugins", []))
        return COMMANDS[args.command](args, console)
    except HarnessError as exc:
        console.print(f"ckpt-harness: error: {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # unknown case/format names and other argument problems
        console.print(f"ckpt-harness: error: {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT


def _progress(console: Console, verb: str):
    return lambda label: console.print(f"[dim]{verb} {label}[/dim]", highlight=False)


def cmd_produce(args: argparse.Namespace, console: Console) -> int:
    from harness.produce import produce

    from harness.case import CASES

    cases = [c.name for c in CASES if c.corpus] if args.corpus and not args.cases else args.cases
    target = produce(args.out, cases, args.formats, args.device, args.replace, _progress(console, "producing"))
    console.print(f"wrote {target}", highlight=False)
    return 0


def cmd_consume(args: argparse.Namespace, console: Console) -> int:
    from harness.consume import consume

    with RecordWriter(args.results) as writer:
        records = consume(args.artifacts, writer, args.device, _progress(console, "consuming"), _expectations(args))
    return _report(records, console)


def cmd_roundtrip(args: argparse.Namespace, console: Console) -> int:
    from harness.consume import consume
    from harness.produce import produce

    with tempfile.TemporaryDirectory(prefix="ckpt-roundtrip-") as folder:
        produce(Path(folder), args.cases, args.formats, args.device, False, _progress(console, "producing"))
        with RecordWriter(args.results) as writer:
            records = consume([Path(folder)], writer, args.device, _progress(console, "consuming"),
                              _expectations(args))
    return _report(records, console)


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    from harness.records import read_records
    from harness.summary import print_grid, print_summary, print_weights_only

    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        raise HarnessError(f"no such results file: {', '.join(missing)}; run `ckpt-harness consume` first")
    from harness.expectations import judge

    records = read_records(args.results)
    known = _expectations(args)
    for record in records:  # judged again: the expectations may have changed since the run
        record.pop("expected", None)
        record["problem"] = judge(record, known)
    print_grid(records, Console())
    print_weights_only(records, Console())
    print_summary(records, Console())
    return _exit_status(records, console)


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from harness.case import CASES
    from harness.checks import CHECKS
    from harness.formats import FORMATS

    out = Console()
    for title, registry, text in (("cases", CASES, "exercises"), ("formats", FORMATS, "description"),
                                  ("checks", CHECKS, "description")):
        out.print(f"[b]{title}[/b]")
        for item in registry:
            out.print(f"  {item.name:28} {getattr(item, text)}", highlight=False)
    return 0


def _report(records: list, console: Console) -> int:
    from harness.summary import print_summary

    dicts = [dataclasses.asdict(r) for r in records]
    print_summary(dicts, Console())
    return _exit_status(dicts, console)


def _exit_status(dicts: list, console: Console) -> int:
    if not dicts:
        console.print("ckpt-harness: no records were produced", highlight=False)
        return EXIT_FINDINGS
    return EXIT_FINDINGS if any(r.get("problem") for r in dicts) else 0


COMMANDS = {"produce": cmd_produce, "consume": cmd_consume, "roundtrip": cmd_roundtrip, "summary": cmd_summary,
            "list": cmd_list}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
