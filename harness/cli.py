"""The ``ckpt-harness`` command line: one subcommand per module of :mod:`harness.commands`."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

from rich.console import Console

from harness.commands import COMMANDS, EXIT_BAD_INPUT, EXIT_FINDINGS  # noqa: F401  (re-exported)
from harness.errors import HarnessError
from harness.omp import wait_passively
from harness.plugins import load_plugins


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``ckpt-harness: error: ...``) and exit 2 like every bad input."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        from harness.escaping import strip_controls

        self.exit(EXIT_BAD_INPUT, f"ckpt-harness: error: {self.prog}: {strip_controls(message)} "
                                  f"(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ckpt-harness", description="Compatibility and robustness checks for PyTorch checkpoints.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in sorted(COMMANDS, key=lambda c: (c.order, c.name)):
        command.add_arguments(subparsers.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 clean, 1 findings, 2 bad input)."""
    wait_passively()  # before anything imports torch (harness.omp says why)
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        load_plugins(getattr(args, "plugins", []))
        return COMMANDS.get(args.command).run(args, console)
    except (HarnessError, ValueError) as exc:  # ValueError: unknown case/format names and other argument problems
        return _bad_input(console, exc)
    except OSError as exc:  # a file system refusal the commands did not foresee: still one line, no traceback
        return _bad_input(console, exc)


def _bad_input(console: Console, exc: BaseException) -> int:
    """One line on stderr; the message may quote file contents, so markup and control characters are escaped."""
    from harness.escaping import terminal

    message = " ".join(str(exc).split("\n"))
    console.print(f"ckpt-harness: error: {terminal(message)}", highlight=False, soft_wrap=True)
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
