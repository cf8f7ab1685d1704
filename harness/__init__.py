"""checkpoint-harness: produce PyTorch checkpoints of every case in every format, then load them
back — in this torch or another — and check that nothing was lost or changed.

The public API is small; everything else is reachable through its modules:

* :func:`produce` and :func:`consume` — the two halves of the flow;
* :data:`CASES`, :data:`FORMATS`, :data:`CHECKS` — the registries a new case, format or check joins;
* :class:`Case`, :class:`Format`, :class:`Check` — what to subclass or instantiate to add one.
"""

from harness.case import CASES, Case
from harness.checks import CHECKS, Check
from harness.consume import consume
from harness.errors import HarnessError
from harness.formats import FORMATS, Format
from harness.produce import produce

__all__ = ["CASES", "CHECKS", "FORMATS", "Case", "Check", "Format", "HarnessError", "consume", "produce"]
__version__ = "0.1.0"
