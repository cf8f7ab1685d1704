"""``ckpt-harness bench``: time save and load of each format against memcpy and raw file I/O baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands import EXIT_FINDINGS, _options, register

CACHES = ("warm", "cold")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.bench.sizes import DEFAULT_SIZES

    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"payload sizes, comma-separated (default: {DEFAULT_SIZES}; 1MB = 2**20 bytes)")
    parser.add_argument("--format", dest="formats", action="append", default=[],
                        help="only this format (repeatable; 'all' for every one-model format; "
                             "default: the common weight, module and program formats)")
    parser.add_argument("--operation", dest="operations", action="append", default=[],
                        help="only this format operation: save, save_fsync, load, load_mmap (repeatable)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds per benchmark, each timing it twice (series A and A'; default: 5)")
    parser.add_argument("--cache", default="warm",
                        help="page-cache states for loads: warm, cold or warm,cold (default: warm); "
                             "cold is measured only where the pages can be verifiably dropped")
    parser.add_argument("--json", type=Path, help="pytest-benchmark JSON to write "
                        "(default: results/bench/<env-id>.json)")
    parser.add_argument("--workdir", type=Path, help="folder for the benchmark files (default: the temp folder; "
                        "its file system is what is measured)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads, and OMP/MKL/OpenBLAS threads, for the run (default: 1, which "
                             "keeps a shared machine's scheduling out of parallel copies; 0: torch's own)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="a round's time: wall (default) or the process's CPU time (immune to other processes "
                             "on a shared machine, blind to waiting for the disk)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS probe process")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="also draw the charts of this run into DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per benchmark from pytest")
    _options.plugin_argument(parser)


def _validate(args: argparse.Namespace) -> None:
    from harness.bench.operations import by_kind
    from harness.bench.sizes import parse_sizes
    from harness.errors import HarnessError
    from harness.formats import FORMATS

    parse_sizes(args.sizes)
    if args.threads is not None and args.threads < 0:
        raise HarnessError(f"--threads {args.threads}: give 1 or more (0: torch's own)")
    if args.rounds < 1:
        raise HarnessError(f"--rounds {args.rounds}: give at least 1 (bench-compare gates only on 5 or more)")
    unknown = [c for c in args.cache.split(",") if c.strip() not in CACHES]
    if unknown:
        raise HarnessError(f"--cache {args.cache!r}: use warm, cold or warm,cold")
    names = [op.name for op in by_kind("format")]
    bad = [o for o in args.operations if o not in names]
    if bad:
        raise HarnessError(f"unknown --operation {bad[0]!r}; known: {', '.join(names)}")
    for name in args.formats:
        if name != "all":
            FORMATS.get(name)  # ValueError (exit 2) naming the known formats


def wide_console() -> Console:
    """stdout, at least 150 columns wide even when it is not a terminal (tables stay readable in logs)."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


def _default_json() -> Path:
    from harness.env import describe, env_id

    return Path("results") / "bench" / f"{env_id(describe('cpu'))}.json"


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.bench import results, runner
    from harness.bench.table import print_results

    _validate(args)
    json_path = args.json or _default_json()
    status = runner.run(runner.Options(
        json=json_path, sizes=args.sizes, formats=args.formats, operations=args.operations, rounds=args.rounds,
        caches=args.cache, workdir=args.workdir, rss=not args.no_rss, plugins=args.plugins, verbose=args.verbose,
        threads=args.threads, clock=args.clock))
    if not json_path.exists():
        console.print(f"ckpt-harness: pytest exited {status} before writing {json_path}", highlight=False)
        return EXIT_FINDINGS
    document = results.read_json(json_path)
    print_results(results.rows(document, str(json_path)), wide_console(), f"{json_path} (torch "
                  f"{document['machine_info'].get('torch')}, page cache: cold "
                  f"{document['machine_info'].get('page_cache', {}).get('cold')})")
    if args.plot:
        from harness.bench.plots import render

        for path in render([json_path], args.plot):
            console.print(f"wrote {path}", highlight=False)
    return 0 if status == 0 else EXIT_FINDINGS


register("bench", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=60)
