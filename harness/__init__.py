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

import importlib  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from typing import Any  # noqa: E402

#: each public name: (module, attribute), imported on first use. ``summary`` and ``report`` read
#: records without torch, and importing torch was most of their time.
_PUBLIC = {
    "CASES": ("harness.case", "CASES"), "Case": ("harness.case", "Case"), "register_case": ("harness.case", "register"),
    "CHECKS": ("harness.checks", "CHECKS"), "Check": ("harness.checks", "Check"),
    "Context": ("harness.checks", "Context"), "Outcome": ("harness.checks", "Outcome"),
    "failed": ("harness.checks", "failed"), "passed": ("harness.checks", "passed"),
    "skipped": ("harness.checks", "skipped"), "register_check": ("harness.checks", "register"),
    "consume": ("harness.consume", "consume"), "HarnessError": ("harness.errors", "HarnessError"),
    "fingerprint": ("harness.fingerprint", "fingerprint"), "FORMATS": ("harness.formats", "FORMATS"),
    "Format": ("harness.formats", "Format"), "register_format": ("harness.formats", "register"),
    "produce": ("harness.produce", "produce"), "RoundTrip": ("harness.roundtrip", "RoundTrip"),
    "roundtrip_model": ("harness.roundtrip", "roundtrip_model"),
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the function, not the submodule of the same name (consume, produce, fingerprint)
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


class _Package(types.ModuleType):
    """``harness.consume`` (and ``produce``, ``fingerprint``) is the public function, as it was when
    this file imported them eagerly, even after the submodule of the same name is imported (which
    would otherwise set the attribute to the module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _PUBLIC.get(name, ("", ""))[1] == name \
                and value.__name__ == _PUBLIC[name][0]:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "CASES", "CHECKS", "FORMATS", "Case", "Check", "Context", "Format", "HarnessError", "Outcome", "RoundTrip",
    "consume", "failed", "fingerprint", "passed", "produce", "register_case", "register_check", "register_format",
    "roundtrip_model", "skipped",
]
__version__ = "0.1.0"
