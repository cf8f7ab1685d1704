"""A name → object registry: each format, case and check module registers itself on import."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds named entries of one kind; names are unique and listed in registration order."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; a second entry with the same name is a bug."""
        name = getattr(entry, "name")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def discover(self) -> None:
        """Import every module of the package so that each registers its entries."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        """The entry called ``name``, or a ValueError listing the known names."""
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __iter__(self) -> Iterator[T]:
        self.discover()
        return iter(list(self._entries.values()))

    def names(self) -> list[str]:
        self.discover()
        return list(self._entries)
