"""``ckpt-harness corrupt``: load damaged copies of real artifacts, each in its own process, and classify
what happens."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.commands import _options, register
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.corrupt import runner

    parser.add_argument("artifacts", type=Path, nargs="+", help="folders written by produce (only read)")
    parser.add_argument("--results", type=Path, required=True, help="JSON-lines file to write records to")
    parser.add_argument("--profile", choices=sorted(runner.PROFILES), default="ci",
                        help=f"how many damaged copies: {runner.PROFILES} (default: ci)")
    parser.add_argument("--count", type=int, help="damaged copies to load (overrides --profile)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default: 0)")
    parser.add_argument("--workers", type=int, default=2, help="loads side by side (default: 2)")
    parser.add_argument("--timeout", type=float, default=runner.DEFAULT_TIMEOUT_S,
                        help=f"seconds before a load counts as a hang (default: {runner.DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--memory-mb", type=int, default=runner.DEFAULT_MEMORY_MB,
                        help=f"address space a load may add, in MiB (default: {runner.DEFAULT_MEMORY_MB})")
    parser.add_argument("--max-bytes", type=int, default=runner.DEFAULT_MAX_SOURCE_BYTES,
                        help="leave out artifacts larger than this (default: 8 MiB)")
    parser.add_argument("--format", dest="formats", action="append", help="only this format (repeatable)")
    parser.add_argument("--trust", action="store_true",
                        help="treat the artifacts as sealed by this user's produce: their controls may then allow "
                             "the vetted extra globals (harness/corrupt/vetted.py); also CKPT_HARNESS_TRUST=1")
    _options.plugin_argument(parser)
    _options.expectations_argument(parser)


def _validate(args: argparse.Namespace) -> int:
    from harness.corrupt import runner
    from harness.outputs import check_output_file

    check_output_file(args.results, "--results", inputs=args.artifacts)
    count = runner.PROFILES[args.profile] if args.count is None else args.count
    if count < 0:
        raise HarnessError("--count must be 0 (only the undamaged controls) or more")
    for name, value in (("--workers", args.workers), ("--timeout", args.timeout), ("--memory-mb", args.memory_mb),
                        ("--max-bytes", args.max_bytes)):
        if value <= 0:
            raise HarnessError(f"{name} must be a positive number")
    return count


def _sources(args: argparse.Namespace) -> tuple[list, list]:
    from harness.corrupt.runner import load_sources
    from harness.formats import FORMATS
    from harness.manifest import entries, find_manifests, read, verify_artifact
    from harness.trust import Trust, explicit

    for name in args.formats or []:
        FORMATS.get(name)  # unknown names: a one-line error listing the known ones
    manifests = [read(path) for path in find_manifests(args.artifacts)]
    for document in manifests:
        for entry in entries(document):
            if entry.get("status") == "ok":
                verify_artifact(document, entry)
    sources, left_out = load_sources(manifests, args.max_bytes, set(args.formats or []) or None,
                                     Trust(explicit(args.trust)))
    if not sources:
        raise HarnessError("no artifact to damage under " + ", ".join(map(str, args.artifacts)) +
                           "; produce some first, or raise --max-bytes / change --format")
    return sources, left_out


def run(args: argparse.Namespace, console: Console) -> int:
    from harness import env as envmod
    from harness.corrupt import report, runner
    from harness.records import RecordWriter

    count = _validate(args)
    known = _options.expectations(args)
    sources, left_out = _sources(args)
    items = runner.plan(sources, count, args.seed)
    consumer = envmod.brief(envmod.describe("cpu"))
    results = []
    started = time.perf_counter()
    columns = (TextColumn("corrupt"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with tempfile.TemporaryDirectory(prefix="ckpt-corrupt-") as workdir, RecordWriter(args.results) as writer, \
            Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(items))
        for source in sources:  # a file naming os.system & co. is a finding before any load
            refused = runner.vetted_and_refused(source)[1]
            if refused:
                writer.write(report.refused_record(source, refused, consumer, known))
        for result in runner.Runner(Path(workdir), args.seed, args.workers, args.timeout, args.memory_mb,
                                           args.plugins).run(items):
            results.append(result)
            writer.write(report.to_record(result, consumer, known))
            progress.update(task, advance=1, description=f"{result.source.format}: {result.outcome}")
    out = Console(width=max(Console().width, 132))  # the count tables need the room even when piped
    report.print_report(results, writer.records, time.perf_counter() - started, out, left_out)
    return _options.exit_status([dataclasses.asdict(r) for r in writer.records], console)


register("corrupt", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=50)
