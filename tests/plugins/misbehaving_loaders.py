"""Formats whose loaders crash, hang, exhaust memory, exit or corrupt silently: proof that
``ckpt-harness corrupt`` classifies each outcome from outside the load process and carries on.

Loaded as a plugin (``--plugin tests.plugins.misbehaving_loaders``) by the produce and corrupt
subprocesses of tests/test_corrupt.py. Each saves a normal state_dict and misbehaves on load.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from harness.case import Case
from harness.formats import register
from harness.formats.state_dict import StateDict


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang() -> None:
    time.sleep(3600)


def _allocate() -> None:
    torch.empty(2**40, dtype=torch.uint8).fill_(1)  # 1 TiB: far over any memory limit


def _exit() -> None:
    os._exit(3)


#: format name suffix -> what its load does instead of returning
MISBEHAVIOURS: dict[str, Callable[[], None]] = {"segfault": _segfault, "hang": _hang, "allocate": _allocate,
                                                "exit": _exit}


class Misbehaving(StateDict):
    def __init__(self, what: str) -> None:
        super().__init__(legacy=False)
        self.what = what
        self.name = f"misbehaving_{what}"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        MISBEHAVIOURS[self.what]()
        return super().load(path, mode, map_location, case)


class SilentlyWrong(StateDict):
    """Loads, then adds one to the first tensor: nothing raises, the values are wrong."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "misbehaving_silent"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        state = super().load(path, mode, map_location, case)
        first = next(iter(state))
        state[first] = state[first] + 1
        return state


for _what in MISBEHAVIOURS:
    register(Misbehaving(_what))
register(SilentlyWrong())
