"""How torch's OpenMP threads wait between parallel regions: asleep, not spinning.

libgomp (the OpenMP runtime of torch's Linux wheels) lets a thread that finished its share of a
parallel region spin for a while before it sleeps. Where every core is busy — other jobs on a shared
machine, or ``consume --jobs N`` workers that each keep torch's default thread count — the spinning
thread holds the core that the thread it waits for needs. Measured on the 2-core project machine under
a load average of ~7: a resnet18 forward (2×3×64×64) took 1.19 s wall / 0.81 CPU s with 2 threads
spinning, 0.067 s / 0.044 CPU s with ``OMP_WAIT_POLICY=PASSIVE``, and a whole ``consume --jobs 1`` of
2.14.1's artifacts went from 122 to 75 CPU seconds with records identical to the last character. The
thread count and the work split stay the same, so results stay bit-identical (unlike fewer threads,
which sum floats in another order).

libgomp reads the variable once, when torch loads it: :func:`wait_passively` runs first thing in the
command line's ``main`` (standard library only; torch is imported later, by the command), and worker
processes started afterwards inherit it.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping, Optional

#: the OpenMP variable, and the policy the command line asks for
VARIABLE = "OMP_WAIT_POLICY"
POLICY = "PASSIVE"


def wait_passively(environ: Optional[MutableMapping[str, str]] = None,
                   modules: Optional[Mapping[str, object]] = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (the process environment) unless the user chose a
    policy already or torch is imported (too late: libgomp has read its settings); True when set here."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if VARIABLE in environ or "torch" in modules:
        return False
    environ[VARIABLE] = POLICY
    return True
