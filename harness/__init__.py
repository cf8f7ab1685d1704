"""checkpoint-harness: produce PyTorch checkpoints of every case in every format, then load them
back — in this torch or another — and check that nothing was lost or changed.

The public API (``__all__``); everything else is reachable through its modules but may change:

* :func:`produce` and :func:`consume` — the two halves of the flow;
* :func:`roundtrip_model` / :class:`RoundTrip` — both halves for your own model, in this process
  (the pytest plugin's ``ckpt_roundtrip`` fixture calls it);
* :class:`Case`, :class:`Format`, :class:`Check` — what to subclass or instantiate to add one, and
  :func:`register_case`, :func:`register_format`, :func:`register_check` to add it;
* :data:`CASES`, :data:`FORMATS`, :data:`CHECKS` — the registries (filled on first use, never at import);
* :class:`Context` (what a check sees), :class:`Outcome` with :func:`passed`, :func:`failed`, :func:`skipped`;
* :func:`fingerprint` — dtypes, shapes, strides, sharing and byte hashes of every tensor in an object;
* :class:`HarnessError` — bad input, reported as one line and exit status 2.

Importing ``harness`` registers nothing and imports no case: it only lets ``harness_cases`` (the
``cases/`` folder) be imported from a source checkout (:mod:`harness._cases`).
"""

from harness import _cases

_cases.install()

from harness.case import CASES, Case  # noqa: E402
from harness.case import register as register_case  # noqa: E402
from harness.checks import CHECKS, Check, Context, Outcome, failed, passed, skipped  # noqa: E402
from harness.checks import register as register_check  # noqa: E402
from harness.consume import consume  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.fingerprint import fingerprint  # noqa: E402
from harness.formats import FORMATS, Format  # noqa: E402
from harness.formats import register as register_format  # noqa: E402
from harness.produce import produce  # noqa: E402
from harness.roundtrip import RoundTrip, roundtrip_model  # noqa: E402

__all__ = [
    "CASES", "CHECKS", "FORMATS", "Case", "Check", "Context", "Format", "HarnessError", "Outcome", "RoundTrip",
    "consume", "failed", "fingerprint", "passed", "produce", "register_case", "register_check", "register_format",
    "roundtrip_model", "skipped",
]
__version__ = "0.1.0"
