"""The ``ckpt-harness`` subcommands: one module per command, each registering itself.

A command module defines ``add_arguments(parser)`` and ``run(args, console) -> int`` and registers
them with :func:`register`. ``run`` returns the exit status: 0 clean, 1 findings, 2 bad input
(raise :class:`harness.errors.HarnessError` for the last; the CLI turns it into one line).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from rich.console import Console

from harness.internal.registry import Registry

EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, its arguments and what it does."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]
    order: int = 100


COMMANDS: Registry[Command] = Registry("command", "harness.commands", plugins=False)


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace, Console], int], order: int = 100) -> Command:
    """Register a subcommand; ``order`` sorts it in ``--help`` (lower first)."""
    return COMMANDS.register(Command(name, help, add_arguments, run, order))
