"""Plugins: modules that register extra cases, formats or checks.

Two ways in, both ending in an import of the plugin's module (whose ``register`` calls add its entries):

* ``--plugin MODULE`` on the command line (and ``plugins=`` of :func:`harness.pytest_plugin.roundtrip`);
* an installed distribution's entry point in the ``checkpoint_harness.plugins`` group, e.g. in its
  pyproject.toml ``[project.entry-points."checkpoint_harness.plugins"] mine = "mypkg.harness_plugin"``.
  An entry point naming a callable (``"mypkg.plugin:setup"``) has it called with no arguments.
  These load once, on the first lookup in a registry, never at ``import harness``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable

from harness.errors import HarnessError

GROUP = "checkpoint_harness.plugins"

_loaded_entry_points: list[str] | None = None


def load_plugins(names: Iterable[str]) -> None:
    """Import each module so that it registers its entries; a failure is one clear line."""
    for name in names or ():
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise HarnessError(f"plugin {name!r} does not import ({type(exc).__name__}: {exc}); "
                               "check the module name and that it is on PYTHONPATH") from None


def load_entry_points(reload: bool = False) -> list[str]:
    """Load every installed ``checkpoint_harness.plugins`` entry point (once); returns their names.

    ``reload`` loads again the ones not loaded yet (after installing a plugin in a running process).
    A plugin that fails to load is a :class:`HarnessError` naming it and its distribution.
    """
    global _loaded_entry_points
    if _loaded_entry_points is not None and not reload:
        return list(_loaded_entry_points)
    done = list(_loaded_entry_points or [])
    _loaded_entry_points = done  # set first: a plugin's own registry lookups must not recurse
    for point in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda p: p.name):
        if point.name in done:
            continue
        done.append(point.name)
        dist = getattr(point.dist, "name", None) or "an unknown distribution"
        try:
            loaded = point.load()
            if callable(loaded):
                loaded()
        except Exception as exc:
            raise HarnessError(f"plugin entry point {point.name!r} = {point.value!r} (from {dist}, group {GROUP}) "
                               f"does not load ({type(exc).__name__}: {exc})") from None
    return list(done)
