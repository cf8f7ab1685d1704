"""Where the seed cases are imported from: the package ``harness_cases``, kept in the ``cases/`` folder.

The layout names the folder ``cases/``; the import name is ours (``harness_cases``), so that a user's
own ``cases`` package never collides with it. An installed wheel or an editable install maps the name
to the folder (``[tool.setuptools.package-dir]`` in pyproject.toml). A plain source checkout run as
``PYTHONPATH=repo python -m harness`` has no ``harness_cases`` folder: :func:`install` adds a finder
that resolves the name to the ``cases/`` folder beside the imported ``harness`` package, and only
when that package sits in a source checkout (a ``pyproject.toml`` beside it).

Artifacts written before the rename name their classes ``cases.<module>.<Class>``;
:data:`legacy_pickle` is a ``pickle_module`` for ``torch.load`` that reads those names as
``harness_cases.<module>.<Class>``, and only those.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Optional, Sequence

PACKAGE = "harness_cases"
#: the import name of the cases before they moved under ours
LEGACY_PACKAGE = "cases"

_CHECKOUT = Path(__file__).resolve().parent.parent


def source_folder() -> Optional[Path]:
    """The ``cases/`` folder of the source checkout this harness runs from, else None (an installed wheel)."""
    folder = _CHECKOUT / "cases"
    if (folder / "__init__.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file():
        return folder
    return None


class _CasesFinder(importlib.abc.MetaPathFinder):
    """Resolves ``harness_cases`` to the source checkout's ``cases/`` folder (submodules follow its ``__path__``)."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != PACKAGE:
            return None
        folder = source_folder()
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): the cases beside the running harness win over an
    editable install's mapping to another checkout. It answers for ``harness_cases`` alone, imports nothing."""
    if not any(isinstance(finder, _CasesFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CasesFinder())


def renamed(module: str) -> str:
    """``cases.simple`` → ``harness_cases.simple``; every other module name unchanged."""
    if module == LEGACY_PACKAGE or module.startswith(LEGACY_PACKAGE + "."):
        return PACKAGE + module[len(LEGACY_PACKAGE):]
    return module


class LegacyNamesUnpickler(pickle.Unpickler):
    """A full unpickler that reads the pre-rename case module names as ``harness_cases``."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(renamed(module), name)


#: ``torch.load(..., pickle_module=legacy_pickle)`` for a full (weights_only=False) load of the
#: harness's own artifacts; torch subclasses ``Unpickler`` and calls ``load`` for the legacy stream.
legacy_pickle = types.ModuleType("harness_legacy_pickle")
legacy_pickle.Unpickler = LegacyNamesUnpickler  # type: ignore[attr-defined]
legacy_pickle.load = pickle.load  # type: ignore[attr-defined]
legacy_pickle.loads = pickle.loads  # type: ignore[attr-defined]
legacy_pickle.dump = pickle.dump  # type: ignore[attr-defined]
legacy_pickle.dumps = pickle.dumps  # type: ignore[attr-defined]
