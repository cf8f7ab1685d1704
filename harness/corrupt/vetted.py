"""Which globals a ``corrupt`` load may allow beyond torch's own weights_only set: a fixed, vetted list.

``corrupt`` loads pickles with ``weights_only=True``. Some undamaged controls need a few more globals
(a training checkpoint's numpy RNG state and ``argparse.Namespace``, a whole-model pickle's module
classes). Those are allowed only when the source is trusted (:mod:`harness.trust`) and only when each
name is on this list; a name a file merely *mentions* is never allowed because it is mentioned.

Vetted, and why each is harmless to call with data from a file (no I/O, no import, no code lookup):

- numpy's array reconstructors (``_reconstruct``, ``scalar``, ``ndarray``, ``dtype`` and the
  ``numpy.dtypes.*DType`` classes): they build arrays and scalars from bytes; an object array's
  items come from the (restricted) unpickler itself.
- ``argparse.Namespace``: an attribute bag; ``collections.OrderedDict``, ``set``, ``frozenset``: containers.
- ``torch.nn`` module classes (``torch.nn.modules.*``, subclasses of ``nn.Module``) and the harness's
  own case models (``harness_cases.*``; not the pre-rename ``cases.*`` names, which would import
  whatever ``cases`` package is on the path): constructing one allocates parameters (bounded by the load's memory
  limit) and ``nn.Module.__setstate__`` only updates ``__dict__``.
- functions defined in ``torch.nn.functional`` (a Transformer stores its activation): tensor maths.

Names are resolved from modules already imported (``sys.modules``), never by importing a module a
file names (importing is running code).
"""

from __future__ import annotations

import re
import sys
import types
from typing import Any, Iterable, Optional

EXACT = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype",
    "argparse.Namespace",
    "collections.OrderedDict", "builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset",
})
NUMPY_DTYPE_CLASS = re.compile(r"numpy\.dtypes\.[A-Za-z0-9]+DType")
MODULE_CLASS = re.compile(r"(torch\.nn\.modules\.[a-z_0-9]+|harness_cases\.[a-z_0-9]+)\.[A-Za-z_][A-Za-z_0-9]*")
FUNCTIONAL = re.compile(r"torch\.nn\.functional\.[a-z_][a-z_0-9]*")


def _loaded(name: str) -> Optional[Any]:
    """The object ``module.attribute`` from an already imported module, or None (never imports)."""
    module_name, _, attribute = name.rpartition(".")
    module = sys.modules.get(module_name)
    return getattr(module, attribute, None) if module is not None else None


def is_vetted(name: str) -> bool:
    """True when ``name`` ("module.qualname") is on the vetted list (see the module docstring)."""
    if name in EXACT or NUMPY_DTYPE_CLASS.fullmatch(name):
        return True
    if MODULE_CLASS.fullmatch(name):
        import torch

        if name.startswith("harness_cases."):
            from harness.case import CASES

            CASES.discover()  # the harness's own case modules, nothing a file names
        obj = _loaded(name)
        return isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == name.rpartition(".")[0]
    if FUNCTIONAL.fullmatch(name):
        obj = _loaded(name)
        return isinstance(obj, types.FunctionType) and obj.__module__ == "torch.nn.functional"
    return False


def torch_safe(name: str, allowlist: Optional[frozenset[str]]) -> bool:
    """True when torch's own weights_only unpickler accepts ``name`` (where the release can list them)."""
    if allowlist is None:  # a release that cannot list them: only torch's tensor rebuild helpers count
        return name.startswith("torch._utils._rebuild_") or name == "collections.OrderedDict"
    return name in allowlist


def split(names: Iterable[str], allowlist: Optional[frozenset[str]]) -> tuple[list[str], list[str]]:
    """``(vetted, refused)`` among the names torch's own set does not cover: refused ones are never allowed."""
    extra = sorted(n for n in set(names) if not torch_safe(n, allowlist))
    return [n for n in extra if is_vetted(n)], [n for n in extra if not is_vetted(n)]
