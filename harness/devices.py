"""``--device`` validated before any work starts: one line saying what to pass instead."""

from __future__ import annotations

import torch

from harness import compat
from harness.errors import HarnessError

SUPPORTED = ("cpu", "cuda")


def validate(device: str) -> str:
    """``device`` as torch spells it, or a :class:`HarnessError` naming what would work here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise HarnessError(f"--device {device!r} is not a device torch knows; {_choices()}") from None
    if parsed.type not in SUPPORTED:
        raise HarnessError(f"--device {device!r}: the harness runs on cpu or cuda only; {_choices()}")
    if parsed.type == "cpu":
        return "cpu"
    count = compat.cuda_device_count()
    if not count:
        raise HarnessError(f"--device {device!r}: CUDA is not available here (torch {torch.__version__}, "
                           f"torch.cuda.is_available() is False); use --device cpu")
    if parsed.index is not None and parsed.index >= count:
        raise HarnessError(f"--device {device!r}: this machine has {count} CUDA device(s); {_choices()}")
    return str(parsed)


def _choices() -> str:
    count = compat.cuda_device_count()
    gpus = f", cuda or cuda:0..cuda:{count - 1}" if count else " (no CUDA device here)"
    return f"use cpu{gpus}"
