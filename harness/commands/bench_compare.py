"""``ckpt-harness bench-compare``: flag benchmarks whose median got slower beyond a threshold and the noise.

Two JSON files from ``bench`` are compared as they are; with ``--interleave`` the two arguments are
releases (or Python interpreters) whose benchmark workers are run now, taking turns round by round
beside an identical rerun of the old one (:mod:`harness.bench.pair`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.commands import EXIT_FINDINGS, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, help="JSON of the reference run (ckpt-harness bench --json); with "
                        "--interleave: the reference release (e.g. 2.5.1) or its Python interpreter")
    parser.add_argument("new", type=Path, help="JSON of the run to judge (another release, or a rerun); with "
                        "--interleave: the release or Python interpreter to judge")
    parser.add_argument("--threshold", default="10%",
                        help="slowdown of the median that counts, if also beyond the runs' own spread (default: 10%%)")
    parser.add_argument("--relative", action="store_true",
                        help="judge each format's time relative to its baseline in the same run (for runs on a "
                             "machine whose speed drifted between them; the noise is then the sum of both)")
    live = parser.add_argument_group("--interleave: run both releases now, taking turns in the same time window")
    live.add_argument("--interleave", action="store_true",
                      help="OLD and NEW are releases or interpreters: time both here, round by round, beside an "
                           "identical rerun of OLD whose difference is the A/A floor the gate must exceed")
    live.add_argument("--sizes", default="64MB", help="payload sizes (default: 64MB)")
    live.add_argument("--format", dest="formats", action="append", default=[],
                      help="only this format (repeatable; default: the common weight, module and program formats)")
    live.add_argument("--operation", dest="operations", action="append", default=[],
                      help="only this format operation: save, save_fsync, load, load_mmap (repeatable)")
    live.add_argument("--rounds", type=int, default=7, help="interleaved rounds, each timing every benchmark "
                      "twice in every worker (default: 7; the gate needs 5)")
    live.add_argument("--cache", default="warm", help="page-cache states for loads: warm (default) or warm,cold")
    live.add_argument("--threads", type=int, default=1, help="torch/OMP/MKL threads in every worker (default: 1)")
    live.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="a turn's time (default: wall)")
    live.add_argument("--workdir", type=Path, help="folder for the benchmark files (default: the temp folder)")
    live.add_argument("--json", type=Path, help="write every side's times and the verdicts here")
    live.add_argument("--plugin", dest="plugins", action="append", default=[],
                      help="module every worker imports (repeatable)")
    live.add_argument("--new-plugin", dest="new_plugins", action="append", default=[],
                      help="module only the NEW worker imports: plant a change and see whether it is flagged")


def _percent(value: float) -> str:
    return f"{value * 100:+.0f}%"


def comparison_table(comparisons: list, title: str) -> Table:
    from harness.bench.compare import REGRESSION, baseline_change
    from harness.escaping import terminal

    table = Table(title=terminal(title), title_justify="left")
    for column in ("size", "format", "operation", "cache", "old median s", "new median s", "change", "noise",
                   "A/A floor", "baseline change", "verdict"):
        table.add_column(column)
    for c in sorted(comparisons, key=lambda c: (c.fields["size_bytes"], c.fields["format"], c.fields["operation"])):
        moved = baseline_change(comparisons, c) if c.status != "baseline" else None
        style = "bold red" if c.status == REGRESSION else ""
        table.add_row(*(terminal(str(v)) for v in (c.old["size"], c.fields["format"], c.fields["operation"],
                                                    c.fields["cache"])),
                      f"{c.old['median']:.4f}", f"{c.new['median']:.4f}", _percent(c.change), f"±{c.noise * 100:.0f}%",
                      "-" if c.floor is None else f"±{c.floor * 100:.1f}%", "-" if moved is None else _percent(moved),
                      c.status, style=style)
    return table


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.bench import compare, results
    from harness.commands.bench import wide_console

    threshold = compare.parse_threshold(args.threshold)
    if args.interleave:
        return _interleaved(args, console, threshold)
    old, new = results.read_json(args.old), results.read_json(args.new)
    comparisons = compare.compare(results.rows(old, str(args.old)), results.rows(new, str(args.new)), threshold)
    if args.relative:
        comparisons = compare.relative_to_baselines(comparisons, threshold)
    title = (f"{args.old} (torch {old['machine_info'].get('torch')}) → {args.new} (torch "
             f"{new['machine_info'].get('torch')}); regression: slower by > {threshold * 100:.0f}% and > noise"
             f"{', relative to the baselines' if args.relative else ''}")
    wide_console().print(comparison_table(comparisons, title))
    return _gate(comparisons, console)


def _gate(comparisons: list, console: Console) -> int:
    from harness.bench import compare

    found = compare.regressions(comparisons)
    for c in found:
        console.print(f"regression: {c.fields['format']} {c.fields['operation']} {c.old['size']} ({c.fields['cache']}) "
                      f"{_percent(c.change)} slower, noise ±{c.noise * 100:.0f}%", highlight=False, markup=False)
    return EXIT_FINDINGS if found else 0


def interpreter(name: str) -> str:
    """A Python interpreter given as a path, or the one of a release's built environment (as ``check`` finds it)."""
    from harness.checkfile import envs
    from harness.errors import HarnessError

    path = Path(name)
    if path.is_file():
        return str(path)
    found = envs.find(name)
    if found is None:
        raise HarnessError(f"--interleave {name}: no such interpreter, and no built environment for torch {name} "
                           f"(looked in {', '.join(str(c) for c in envs.candidates(name))})")
    return str(found)


def _interleaved(args: argparse.Namespace, console: Console, threshold: float) -> int:
    import json
    import tempfile

    from harness.bench import pair
    from harness.bench.sizes import parse_sizes
    from harness.commands.bench import wide_console
    from harness.errors import HarnessError

    if args.rounds < 1 or (args.threads is not None and args.threads < 0):
        raise HarnessError("--rounds must be 1 or more and --threads 0 or more")
    pythons = {"old": interpreter(str(args.old)), "new": interpreter(str(args.new))}
    pythons["rerun"] = pythons["old"]
    items = pair.plan(parse_sizes(args.sizes), args.formats, args.operations,
                      [c.strip() for c in args.cache.split(",") if c.strip()])
    plugins = {side: list(args.plugins) + (list(args.new_plugins) if side == "new" else []) for side in pair.SIDES}
    workers = {side: pair.ProcessWorker(pythons[side], args.threads) for side in pair.SIDES}
    try:
        with tempfile.TemporaryDirectory(prefix="ckpt-bench-pair-", dir=args.workdir) as folder:
            outcomes, machines = pair.run(workers, items, args.rounds, Path(folder), args.threads, plugins, args.clock,
                                          lambda line: console.print(line, highlight=False, markup=False))
    finally:
        for worker in workers.values():
            worker.close()
    comparisons = pair.comparisons(outcomes, threshold)
    for outcome in outcomes:
        if outcome.problem or outcome.skip:
            console.print(f"{outcome.item.id}: {outcome.problem or 'skipped: ' + outcome.skip}", highlight=False,
                          markup=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(pair.document(outcomes, comparisons, machines, threshold), indent=1))
    title = (f"torch {machines['old']['torch']} → torch {machines['new']['torch']}, interleaved round by round beside "
             f"an identical rerun; regression: slower by > {threshold * 100:.0f}% and > the A/A floor")
    wide_console().print(comparison_table(comparisons, title))
    status = _gate(comparisons, console)
    broken = [o for o in outcomes if o.problem]
    return EXIT_FINDINGS if status or broken else 0


register("bench-compare", __doc__.split(": ", 1)[1].rstrip("."), add_arguments, run, order=61)
