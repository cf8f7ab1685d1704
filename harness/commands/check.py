"""``ckpt-harness check``: inspect checkpoints without running them; with --torch, load them in those releases.

Exit status: 0 when every file is a readable checkpoint and loads in every requested release,
1 otherwise (a broken file, a file naming a dangerous global, a file over the inspection limits,
a failed load), 2 for bad input (a missing file, a folder, a FIFO or device, an unknown release).

Each file is inspected in a forked child under a time and memory ceiling
(:mod:`harness.inspect.isolated`). A file naming a dangerous global is never fully unpickled,
even with --allow-unsafe; a file over the inspection limits is not handed to any loader.
Everything printed that comes from a file (names, records, messages) has rich markup and
terminal control characters escaped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import stat
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from harness.commands import EXIT_FINDINGS, register
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE", help="checkpoint files (any origin)")
    parser.add_argument("--torch", dest="releases", action="append", default=[], metavar="RELEASE",
                        help="load the files in this torch release's environment (repeatable; see "
                             "harness/data/releases.toml); environments are reused between runs")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first in each release, so whole-model pickles find their classes "
                             "(found in the release's environment and the --path folders only, never the current "
                             "directory)")
    parser.add_argument("--path", dest="paths", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder to import --import modules from (repeatable; e.g. --path . for the current "
                             "directory)")
    parser.add_argument("--allow-unsafe", action="store_true",
                        help="also load with weights_only=False (and with a release's default where that is a "
                             "full unpickle, before 2.6): this RUNS CODE from the file; only for files you trust")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file (JSON lines)")
    parser.add_argument("--inspect-seconds", type=_positive, default=None, metavar="S",
                        help="time budget for inspecting one file (default 30); past it the file is 'over limits'")
    parser.add_argument("--inspect-memory-mb", type=_positive, default=None, metavar="MB",
                        help="memory the inspection of one file may add (default 1024)")
    parser.add_argument("--load-seconds", type=_positive, default=None, metavar="S",
                        help="time budget for each release's loading of all files (default 900); past it the file "
                             "being loaded fails as 'did not finish' and the rest are not tried")
    parser.add_argument("--load-memory-mb", type=_positive, default=None, metavar="MB",
                        help="memory each release's loader may add after importing torch (default: 3x the largest "
                             "file, at least 16384); a load past it fails with a MemoryError")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a positive number below 1e6, got {text!r}")
    return value


def run(args: argparse.Namespace, console: Console) -> int:
    from harness import releases
    from harness.inspect import _allowlist
    from harness.inspect.isolated import inspect_isolated
    from harness.inspect.limits import DEFAULT

    _validate(args.files)
    for folder in args.paths:
        if not folder.is_dir():
            raise HarnessError(f"--path {folder}: no such folder")
    for release in args.releases:
        releases.get(release)  # unknown release: ValueError → one line, exit 2
    limits = dataclasses.replace(DEFAULT, **{k: v for k, v in (("seconds", args.inspect_seconds),
                                                                 ("memory_mb", args.inspect_memory_mb)) if v})
    allowlist = _allowlist()
    with _progress(console) as progress:
        task = progress.add_task("inspecting", total=len(args.files) * (1 + len(args.releases)))
        inspections = []
        seconds: dict[str, float] = {}
        for path in args.files:
            found, used = inspect_isolated(path, limits, allowlist)
            inspections.append(found)
            seconds[found.path] = used["seconds"]
            progress.advance(task)
        verdicts = _load_everywhere(args, inspections, progress, task, console)
    reports = [{**_report(i, verdicts.get(i.path, {})), "inspection_seconds": seconds.get(i.path)}
               for i in inspections]
    if args.json:
        for report in reports:
            print(json.dumps(report, sort_keys=True), flush=True)
    else:
        _print(reports, Console(highlight=False, soft_wrap=True))
    failing = [r for r in reports if r["container"] in _broken() or r["dangerous_globals"]
               or any(v["status"] != "ok" for v in r["verdicts"].values())]
    return EXIT_FINDINGS if failing else 0


#: what a path that exists but is not a regular file is, by its stat mode
NOT_REGULAR = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
               stat.S_ISSOCK: "a socket"}


def _validate(files: list[Path]) -> None:
    for path in files:
        shown = safe(str(path), markup=False)
        if path.is_dir():
            if not _checkpoint_folder(path):
                raise HarnessError(f"{shown} is a folder: pass the checkpoint files in it (e.g. {shown}/*.pt)")
            continue
        try:
            mode = path.stat().st_mode
        except OSError:
            raise HarnessError(f"no such file: {shown}") from None
        kind = next((what for test, what in NOT_REGULAR.items() if test(mode)), None)
        if kind or not stat.S_ISREG(mode):
            raise HarnessError(f"{shown} is {kind or 'not a regular file'}, not a checkpoint file: pass a regular file")


#: C0 and C1 control characters, DEL and the bidirectional overrides: a file's bytes never drive the terminal
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: Any, markup: bool = True) -> str:
    """Text from a file made inert for the terminal: control characters as ``\\xNN``/``\\uNNNN``, lone
    surrogates backslash-escaped, rich markup escaped."""
    printable = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    cleaned = CONTROL.sub(lambda m: ascii(m.group())[1:-1], printable)
    return escape(cleaned) if markup else cleaned


def _checkpoint_folder(path: Path) -> bool:
    """A folder that is itself one checkpoint (sharded safetensors, DCP), as :mod:`harness.containers` says."""
    from harness import containers

    found = containers.identify(path)
    return found is not None and found.folder


def _broken() -> tuple[str, ...]:
    from harness.inspect import BROKEN

    return BROKEN


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _load_everywhere(args: argparse.Namespace, inspections: list, progress: Progress, task: Any,
                     console: Console) -> dict[str, dict[str, Any]]:
    """file path → release → verdict (as JSON)."""
    from harness.checkfile import envs, run_release, same_release
    from harness.checkfile.verdicts import judge
    from harness.inspect import OVER_LIMITS

    verdicts: dict[str, dict[str, Any]] = {i.path: {} for i in inspections}
    # dangerous files are loaded the safe way only, whatever --allow-unsafe says; files over the
    # inspection limits are not handed to a loader at all
    groups = [(False, [i for i in inspections if i.dangerous and i.container != OVER_LIMITS]),
              (args.allow_unsafe, [i for i in inspections if not i.dangerous and i.container != OVER_LIMITS])]
    skipped = [i for i in inspections if i.container == OVER_LIMITS]
    for release in args.releases:
        progress.update(task, description=f"torch {release}: environment")
        python = envs.ensure(release, lambda line: progress.console.print(f"[dim]{line}[/dim]"))
        progress.update(task, description=f"torch {release}: loading")
        for allow_unsafe, group in groups:
            if not group:
                continue
            environment, results = run_release(python, release, group, args.imports, allow_unsafe,
                                               lambda: progress.advance(task), args.paths, **_load_limits(args))
            if not same_release(release, environment["torch"]):
                raise HarnessError(f"the environment {python.parent.parent} has torch {environment['torch']}, not "
                                   f"{release}: remove it so that it is rebuilt")
            for inspection, result in zip(group, results):  # noqa: B905 - the worker pads a short answer
                verdict = judge(inspection, release, result).to_json()
                verdict["notes"] = environment.get("notes", [])
                verdict["default_weights_only"] = environment.get("default_weights_only")
                verdicts[inspection.path][release] = verdict
        for inspection in skipped:
            reason = f"not tried: the inspection stopped at a limit ({inspection.detail})"
            result = {"loads": {"weights_only": {"status": "skip", "message": reason, "warnings": []}},
                      "map_location": None, "needs_globals": None, "torch": "not run"}
            verdicts[inspection.path][release] = {**judge(inspection, release, result).to_json(), "notes": [],
                                                  "default_weights_only": None}
            progress.advance(task)
    return verdicts


def _load_limits(args: argparse.Namespace) -> dict[str, Any]:
    """``run_release``'s deadline and memory cap where the command line set them (else its defaults)."""
    limits = {"seconds": args.load_seconds, "memory_mb": int(args.load_memory_mb) if args.load_memory_mb else None}
    return {key: value for key, value in limits.items() if value is not None}


def _report(inspection: Any, verdicts: dict[str, Any]) -> dict[str, Any]:
    return {**inspection.to_json(), "verdicts": verdicts}


def _print(reports: list[dict[str, Any]], out: Console) -> None:
    for r in reports:
        style = "red" if r["container"] in _broken() else "bold"
        out.print(f"[{style}]{safe(r['path'])}[/]: {safe(r['container'])} — {safe(r['detail'])}")
        if r["dangerous_globals"]:
            out.print(f"  [bold red]DANGEROUS:[/] names {safe(', '.join(r['dangerous_globals']))} — loading it runs "
                      f"code or touches the system: do not load it (no fix is offered)")
        if r["container"] not in _broken():
            dtypes = ", ".join(f"{safe(k)}×{v}" for k, v in sorted(r["dtypes"].items())) or "none"
            out.print(f"  {safe(r['structure'] or '?')}; {r['tensors']} tensors ({dtypes}), {r['bytes']:,} bytes of "
                      f"data; devices: {safe(', '.join(r['devices'])) or 'none'}")
            records = ", ".join(f"{k}={v}" for k, v in r["records"].items() if k != "metadata")
            if records:
                out.print(f"  records: {safe(records)}")
            if r["prefixes"]:
                listed = ", ".join(f"{safe(repr(p))} on {n} keys" for p, n in r["prefixes"].items())
                out.print(f"  key prefixes: {listed}")
            if r["suspicious_globals"]:
                out.print(f"  unknown globals (their code runs when unpickled): "
                          f"{safe(', '.join(r['suspicious_globals']))}")
            if r["unsafe_globals"]:
                out.print(f"  weights_only would refuse: {safe(', '.join(r['unsafe_globals']))}")
        for release, verdict in r["verdicts"].items():
            colour = "green" if verdict["status"] == "ok" else "yellow" if verdict.get("headline", "").startswith(
                ("loads after", "not tried")) else "red"
            mark = f"[{colour}]{safe(verdict.get('headline') or verdict['status'])}[/]"
            out.print(f"  torch {safe(release)} ({safe(verdict['torch'])}): {mark}")
            for mode, load in verdict["loads"].items():
                colour = {"pass": "green", "fail": "red", "skip": "yellow"}.get(load["status"], "red")
                message = f": {safe(load['message'])}" if load["message"] else ""
                out.print(f"    [{colour}]{safe(load['status']):<4}[/] {safe(mode)}{message}")
            if verdict.get("known_breaks"):
                breaks = safe(", ".join(verdict["known_breaks"]))
                out.print(f"    [dim]known breaks (harness/data/breaks.toml): {breaks}[/]")
            for fix in verdict["fixes"]:
                out.print(f"    [cyan]fix:[/] {safe(fix)}")


register("check", __doc__.split(": ", 1)[1].split("\n")[0].rstrip("."), add_arguments, run, order=60)
