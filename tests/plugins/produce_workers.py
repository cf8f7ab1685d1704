"""Cases for ``produce --jobs N`` (tests/test_produce_parallel.py): one whose build raises, one whose build
ends the worker process that builds it.

Loaded as a plugin by the produce workers (``plugins=["tests.plugins.produce_workers"]``); the test
registers the same :data:`PLANTED` cases in its own process only while it runs.
"""

from __future__ import annotations

import multiprocessing
import os

import torch
from torch import nn

from harness.case import Case, register

#: the message of the build that raises
BUILD_FAILURE = "planted: this case cannot be built"
#: the exit status of the worker that the dying case ends
EXIT_STATUS = 70


def _unbuildable() -> nn.Module:
    raise RuntimeError(BUILD_FAILURE)


def _end_the_worker() -> nn.Module:
    if multiprocessing.parent_process() is None:  # never the test's own process: only a worker dies
        raise RuntimeError("this case ends the worker process that builds it; produce it with jobs > 1")
    os._exit(EXIT_STATUS)


PLANTED = (
    Case(name="unbuildable", exercises="a build that raises", build=_unbuildable,
         inputs=lambda: (torch.randn(2, 4),), corpus=False),
    Case(name="worker_killer", exercises="a build that ends its worker process", build=_end_the_worker,
         inputs=lambda: (torch.randn(2, 4),), corpus=False),
)

for _case in PLANTED:
    register(_case)
