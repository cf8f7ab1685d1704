"""``ckpt-harness list``: list the registered cases, formats and checks.

Built-in entries, installed entry-point plugins and ``--plugin`` modules alike; checks in the order
they run.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from harness.commands import _options, register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _options.plugin_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
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


register("list", __doc__.split(": ", 1)[1].split("\n", 1)[0].rstrip("."), add_arguments, run, order=90)
