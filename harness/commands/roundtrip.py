"""``ckpt-harness roundtrip``: produce and consume in a temporary folder; print a summary."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _options.selection_arguments(parser)
    parser.add_argument("--results", type=Path, help="also keep the records in this JSON-lines file")
    _options.expectations_argument(parser)
    _options.jobs_argument(parser, "produce cases, then consume artifacts,")


def run(args: argparse.Namespace, console: Console) -> int:
    _options.start_workers_early(args)
    from harness.consume import consume
    from harness.devices import validate
    from harness.produce import produce
    from harness.records import RecordWriter

    args.device = validate(args.device)
    if args.results is not None:
        from harness.outputs import check_output_file

        check_output_file(args.results, "--results")  # before the produce, not after it
    with tempfile.TemporaryDirectory(prefix="ckpt-roundtrip-") as folder:
        produce(Path(folder), args.cases, args.formats, args.device, False, _options.progress(console, "producing"),
                jobs=args.jobs, plugins=args.plugins)
        with RecordWriter(args.results) as writer:
            records = consume([Path(folder)], writer, args.device, _options.progress(console, "consuming"),
                              _options.expectations(args), args.jobs, args.plugins)
    return _options.report(records, console)


register("roundtrip", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=30)
