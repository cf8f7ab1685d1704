"""Plugins: modules named on the command line that register extra cases, formats or checks."""

from __future__ import annotations

import importlib
from typing import Iterable

from harness.errors import HarnessError


def load_plugins(names: Iterable[str]) -> None:
    """Import each module so that it registers its entries; a failure is one clear line."""
    for name in names or ():
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise HarnessError(f"plugin {name!r} does not import ({type(exc).__name__}: {exc}); "
                               "check the module name and that it is on PYTHONPATH") from None
