"""A name → object registry for formats, cases, checks, commands and the rest.

Nothing is registered when ``harness`` is imported. The first lookup *discovers* the registry: it
imports every public module of its package (each calls ``register``), then loads the installed
plugins of the ``checkpoint_harness.plugins`` entry-point group (:mod:`harness.plugins`).
Tests change a registry only through the scoped API (:meth:`Registry.scoped`,
:meth:`Registry.temporarily`, :meth:`Registry.only`), which puts every entry back on exit.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds named entries of one kind; names are unique and listed in registration order.

    ``package`` is imported module by module on first use; ``plugins`` says whether installed
    entry-point plugins may add to it (the command registry, read to build ``--help``, says no).
    """

    def __init__(self, kind: str, package: str, plugins: bool = True) -> None:
        self.kind = kind
        self.package = package
        self.plugins = plugins
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; a second entry with the same name is a bug."""
        name = entry.name  # type: ignore[attr-defined]
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def discover(self) -> None:
        """Import every public module of the package (each registers its entries), then the plugins."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        if self.plugins:
            from harness.plugins import load_entry_points

            load_entry_points()

    def get(self, name: str) -> T:
        """The entry called ``name``, or a ValueError listing the known names."""
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __len__(self) -> int:
        self.discover()
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        self.discover()
        return iter(list(self._entries.values()))

    def names(self) -> list[str]:
        self.discover()
        return list(self._entries)

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Within the block, registrations and removals are undone on exit (discovered entries stay)."""
        self.discover()
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved

    @contextlib.contextmanager
    def temporarily(self, *entries: T) -> Iterator[Registry[T]]:
        """Register ``entries`` for the duration of the block."""
        with self.scoped():
            for entry in entries:
                self.register(entry)
            yield self

    @contextlib.contextmanager
    def only(self, names: Iterable[str]) -> Iterator[Registry[T]]:
        """Within the block the registry holds just the named entries (unknown names are an error)."""
        wanted = list(names)
        with self.scoped():
            for name in wanted:
                self.get(name)
            self._entries = {name: entry for name, entry in self._entries.items() if name in wanted}
            yield self
