"""``ckpt-harness upgrade``: can this project move from torch A to torch B? Its own checkpoints and code, in both.

Reads ``[tool.ckpt-harness]`` from the project's pyproject.toml (or a ckpt-harness.toml), runs the
project's files and factories in both releases, and writes one report (Markdown and HTML). Exit 0
only when every file loads in B (possibly after a verified fix; a trusted file also with
weights_only=False), every model and training setup runs there, and resume is bit-exact or within
the project's ``resume_tolerance``; 1 otherwise; 2 for bad input (a config problem in release A).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness.commands import EXIT_FINDINGS, register
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="A", help="the torch release the project is on")
    parser.add_argument("--to", dest="target", required=True, metavar="B", help="the torch release to move to")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project root (default: .)")
    parser.add_argument("--config", type=Path, help="a ckpt-harness.toml (default: the project's pyproject.toml)")
    parser.add_argument("--python", dest="pythons", action="append", default=[], metavar="RELEASE=PATH",
                        help="use this interpreter for RELEASE (it needs torch and the project's dependencies)")
    parser.add_argument("--out", type=Path, default=Path("upgrade-report"), help="where upgrade.md/.html go")
    parser.add_argument("--keep", type=Path, help="keep the workers' files (outputs, resumed parameters) here")
    parser.add_argument("--json", action="store_true", help="print the report's data as JSON")


def interpreters(args: argparse.Namespace, requirements: dict[str, list[str]], log: Any) -> dict[str, Path]:
    """RELEASE → interpreter: ``--python`` first, else the release's (harness-built) environment."""
    from harness import releases
    from harness.checkfile import envs

    given: dict[str, Path] = {}
    for item in args.pythons:
        release, sep, path = item.partition("=")
        if not sep or not path:
            raise HarnessError(f"--python {item!r}: write RELEASE=/path/to/python")
        if not Path(path).is_file():
            raise HarnessError(f"--python {item!r}: no such interpreter {path}")
        given[release] = Path(path)
    if args.source == args.target:
        raise HarnessError("--from and --to name the same release")
    for release in (args.source, args.target):
        if release not in given:
            releases.get(release)  # an unknown release: ValueError → one line, exit 2, before any build
    return {release: given.get(release) or envs.ensure(release, log, extra=requirements.get(release, ()))
            for release in (args.source, args.target)}


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.inspect.isolated import inspect_isolated
    from harness.upgrade import answers, config, report
    from harness.upgrade import run as runner

    started = time.perf_counter()
    project = config.load(args.project, args.config)
    pythons = interpreters(args, project.requirements, lambda line: console.print(f"[dim]{escape(line)}[/dim]"))
    # inspected as check does (a forked child under limits), without importing torch here: each
    # side's worker reports its own weights_only allowlist (answers.as_seen_by)
    inspections = [inspect_isolated(path, allowlist=None)[0] for path in project.checkpoints]
    sides = [runner.Side(release, python) for release, python in pythons.items()]
    with runner.workspace(args.keep)() as folder:
        a, b = runner.run(project, inspections, sides, Path(folder))
        problems = runner.config_errors(a)
        if problems:
            raise HarnessError(f"torch {a.release} (the release the project is on): {problems[0]}")
        result = answers.build(project, inspections, a, b)
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    md, page = report.write(result, args.out)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        out = Console(highlight=False, soft_wrap=True)
        out.print(escape(report.markdown(result)))
        out.print(f"report: {md} and {page} ({result['seconds']['total']} s)")
    return 0 if result["ok"] else EXIT_FINDINGS


register("upgrade", __doc__.split(": ", 1)[1].split("\n")[0].rstrip("."), add_arguments, run, order=65)
