"""The catalog of known serialization breaks (``harness/data/breaks.toml``): the one source of truth.

:func:`load` reads and validates it. The matrix's expectations (:mod:`harness.expectations`) take the
reason and torch range of every entry that names a ``break``; ``check``'s verdicts name the entries
whose error pattern matches a failed load (:func:`matching`). Each entry carries a reproducer that
:mod:`harness.breaks.verify` runs in real release environments; ``verified`` records what it saw.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from pathlib import Path
from typing import Any, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from harness.errors import HarnessError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (torch 1.13)
    import tomli as tomllib

CATALOG = Path(__file__).resolve().parents[1] / "data" / "breaks.toml"
REQUIRED = ("id", "consumer", "inspection", "error", "cause", "fix", "source", "reproduce", "verified")


@dataclasses.dataclass(frozen=True)
class Break:
    """One known break: where it shows, how it looks, why, what fixes it, and how to reproduce it."""

    id: str
    consumer: str
    inspection: str
    error: str
    cause: str
    fix: str
    source: str
    reproduce: str
    verified: dict[str, bool]
    producer: str = ""

    @property
    def cross(self) -> bool:
        """True when the break is between a writing and a reading release."""
        return bool(self.producer)

    def shows_in(self, consumer: str, producer: Optional[str] = None) -> bool:
        """True when the ranges say the break shows reading in ``consumer`` (a file from ``producer``)."""
        if not in_range(consumer, self.consumer):
            return False
        return not self.cross or (producer is not None and in_range(producer, self.producer))

    def matches(self, text: str) -> bool:
        return bool(re.search(self.error, text))

    def reason(self) -> str:
        """The sentence an expectation or a verdict shows."""
        return f"{self.cause}. Fix: {self.fix} [{self.id}; {self.source}]"


def in_range(version: str, specifier: str) -> bool:
    """``version`` (``2.5.1+cpu`` too) inside the PEP 440 ``specifier``; an empty range holds everywhere."""
    if not specifier:
        return True
    try:
        return Version(Version(version).base_version) in SpecifierSet(specifier)
    except InvalidVersion:
        return False


def parse(document: dict[str, Any], where: str = "breaks.toml") -> dict[str, Break]:
    """Validated entries by id; a problem is one line naming the entry."""
    entries: dict[str, Break] = {}
    for raw in document.get("break", []):
        ident = raw.get("id", "<no id>")
        missing = [f for f in REQUIRED if f not in raw]
        unknown = set(raw) - {f.name for f in dataclasses.fields(Break)}
        if missing or unknown:
            raise HarnessError(f"{where}: break {ident!r} lacks {missing or 'nothing'}, "
                               f"has unknown {sorted(unknown) or 'none'}")
        if ident in entries:
            raise HarnessError(f"{where}: break {ident!r} appears twice")
        try:
            SpecifierSet(raw["consumer"]), SpecifierSet(raw.get("producer", ""))
            re.compile(raw["error"])
        except (InvalidSpecifier, re.error) as exc:
            raise HarnessError(f"{where}: break {ident!r}: {exc}") from None
        if "def shows(" not in raw["reproduce"]:
            raise HarnessError(f"{where}: break {ident!r}: reproduce must define shows(path)")
        entries[ident] = Break(**{**raw, "verified": dict(raw["verified"])})
    return entries


@functools.lru_cache(maxsize=4)
def load(path: Path = CATALOG) -> dict[str, Break]:
    """The catalog (cached)."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{path}: the breaks catalog does not parse ({exc})") from None
    return parse(document, str(path))


def get(ident: str) -> Break:
    """The entry ``ident``, or a HarnessError naming the file."""
    try:
        return load()[ident]
    except KeyError:
        raise HarnessError(f"no break {ident!r} in {CATALOG}") from None


def matching(release: str, text: str) -> list[Break]:
    """Entries whose error pattern matches ``text`` and whose consumer range holds ``release``."""
    return [b for b in load().values() if text and in_range(release, b.consumer) and b.matches(text)]
