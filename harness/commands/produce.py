"""``ckpt-harness produce``: save every case in every format into ARTIFACTS/<env-id>/."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="artifacts folder (shared by all environments)")
    _options.selection_arguments(parser)
    parser.add_argument("--replace", action="store_true", help="replace this environment's existing folder")
    parser.add_argument("--corpus", action="store_true", help="only the small cases of the frozen corpus")
    _options.jobs_argument(parser, "produce cases")


def run(args: argparse.Namespace, console: Console) -> int:
    _options.start_workers_early(args)
    from harness.case import CASES
    from harness.devices import validate
    from harness.outputs import check_output_folder
    from harness.produce import produce

    check_output_folder(args.out)
    cases = [c.name for c in CASES if c.corpus] if args.corpus and not args.cases else args.cases
    args.device = validate(args.device)
    target = produce(args.out, cases, args.formats, args.device, args.replace, _options.progress(console, "producing"),
                     jobs=args.jobs, plugins=args.plugins)
    console.print(f"wrote {target}", highlight=False, markup=False)
    return 0


register("produce", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=10)
