"""``ckpt-harness check``: inspect checkpoints without running them; with --torch, load them in those releases.

Exit status: 0 when every file is a readable checkpoint and loads in every requested release,
1 otherwise, 2 for bad input (a missing file, a folder, an unknown release).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.commands import EXIT_FINDINGS, register
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE", help="checkpoint files (any origin)")
    parser.add_argument("--torch", dest="releases", action="append", default=[], metavar="RELEASE",
                        help="load the files in this torch release's environment (repeatable; see "
                             "harness/data/releases.toml); environments are reused between runs")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first in each release, so whole-model pickles find their classes")
    parser.add_argument("--allow-unsafe", action="store_true",
                        help="also load with weights_only=False (and with a release's default where that is a "
                             "full unpickle, before 2.6): this RUNS CODE from the file; only for files you trust")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file (JSON lines)")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness import releases
    from harness.inspect import inspect_file

    _validate(args.files)
    for release in args.releases:
        releases.get(release)  # unknown release: ValueError → one line, exit 2
    with _progress(console) as progress:
        task = progress.add_task("inspecting", total=len(args.files) * (1 + len(args.releases)))
        inspections = []
        for path in args.files:
            inspections.append(inspect_file(path))
            progress.advance(task)
        verdicts = _load_everywhere(args, inspections, progress, task, console)
    reports = [_report(i, verdicts.get(i.path, {})) for i in inspections]
    if args.json:
        for report in reports:
            print(json.dumps(report, sort_keys=True), flush=True)
    else:
        _print(reports, Console(highlight=False, soft_wrap=True))
    failing = [r for r in reports if r["container"] in _broken() or any(v["status"] != "ok" for v in r["verdicts"].values())]
    return EXIT_FINDINGS if failing else 0


def _validate(files: list[Path]) -> None:
    for path in files:
        if path.is_dir():
            if not _checkpoint_folder(path):
                raise HarnessError(f"{path} is a folder: pass the checkpoint files in it (e.g. {path}/*.pt)")
        elif not path.is_file():
            raise HarnessError(f"no such file: {path}")


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

    verdicts: dict[str, dict[str, Any]] = {i.path: {} for i in inspections}
    for release in args.releases:
        progress.update(task, description=f"torch {release}: environment")
        python = envs.ensure(release, lambda line: progress.console.print(f"[dim]{line}[/dim]"))
        progress.update(task, description=f"torch {release}: loading")
        environment, results = run_release(python, release, inspections, args.imports, args.allow_unsafe,
                                           lambda: progress.advance(task))
        if not same_release(release, environment["torch"]):
            raise HarnessError(f"the environment {python.parent.parent} has torch {environment['torch']}, not "
                               f"{release}: remove it so that it is rebuilt")
        for inspection, result in zip(inspections, results):
            verdict = judge(inspection, release, result).to_json()
            verdict["notes"] = environment.get("notes", [])
            verdict["default_weights_only"] = environment.get("default_weights_only")
            verdicts[inspection.path][release] = verdict
    return verdicts


def _report(inspection: Any, verdicts: dict[str, Any]) -> dict[str, Any]:
    return {**inspection.to_json(), "verdicts": verdicts}


def _print(reports: list[dict[str, Any]], out: Console) -> None:
    for r in reports:
        style = "red" if r["container"] in _broken() else "bold"
        out.print(f"[{style}]{escape(r['path'])}[/]: {r['container']} — {escape(r['detail'])}")
        if r["container"] not in _broken():
            dtypes = ", ".join(f"{k}×{v}" for k, v in sorted(r["dtypes"].items())) or "none"
            out.print(f"  {r['structure'] or '?'}; {r['tensors']} tensors ({dtypes}), {r['bytes']:,} bytes of data; "
                      f"devices: {', '.join(r['devices']) or 'none'}")
            records = ", ".join(f"{k}={v}" for k, v in r["records"].items() if k != "metadata")
            if records:
                out.print(f"  records: {records}")
            if r["prefixes"]:
                out.print(f"  key prefixes: {', '.join(f'{p!r} on {n} keys' for p, n in r['prefixes'].items())}")
            if r["unsafe_globals"]:
                out.print(f"  weights_only would refuse: {escape(', '.join(r['unsafe_globals']))}")
        for release, verdict in r["verdicts"].items():
            colour = "green" if verdict["status"] == "ok" else "yellow" if verdict.get("headline", "").startswith(
                ("loads after", "not tried")) else "red"
            mark = f"[{colour}]{escape(verdict.get('headline') or verdict['status'])}[/]"
            out.print(f"  torch {release} ({verdict['torch']}): {mark}")
            for mode, load in verdict["loads"].items():
                colour = {"pass": "green", "fail": "red", "skip": "yellow"}[load["status"]]
                message = f": {escape(load['message'])}" if load["message"] else ""
                out.print(f"    [{colour}]{load['status']:<4}[/] {mode}{message}")
            if verdict.get("known_breaks"):
                out.print(f"    [dim]known breaks (harness/data/breaks.toml): {', '.join(verdict['known_breaks'])}[/]")
            for fix in verdict["fixes"]:
                out.print(f"    [cyan]fix:[/] {escape(fix)}")


register("check", __doc__.split(": ", 1)[1].split("\n")[0].rstrip("."), add_arguments, run, order=60)
