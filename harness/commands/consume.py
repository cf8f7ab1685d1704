"""``ckpt-harness consume``: load every artifact found and check it against its manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifacts", type=Path, nargs="+", help="folders written by produce")
    parser.add_argument("--results", type=Path, required=True, help="JSON-lines file to write records to")
    parser.add_argument("--device", default="cpu", help="device to load onto (default: cpu)")
    parser.add_argument("--trust", action="store_true",
                        help="trust every artifact here as if this user's produce had sealed it (full unpickles run "
                             "code from the files): only for folders from your own CI; also CKPT_HARNESS_TRUST=1")
    _options.plugin_argument(parser)
    _options.expectations_argument(parser)
    _options.jobs_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.consume import consume
    from harness.devices import validate
    from harness.outputs import check_output_file
    from harness.records import RecordWriter
    from harness.trust import explicit

    args.device = validate(args.device)
    # Refused before anything is read or written; the file itself is replaced only when the run completes.
    check_output_file(args.results, "--results", inputs=args.artifacts)
    with RecordWriter(args.results) as writer:
        records = consume(args.artifacts, writer, args.device, _options.progress(console, "consuming"),
                          _options.expectations(args), args.jobs, args.plugins, trust_all=explicit(args.trust))
    return _options.report(records, console)


register("consume", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=20)
