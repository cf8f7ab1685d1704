"""Expected outcomes: known incompatibilities, kept as data (``harness/data/expected.toml``).

Each entry names what it covers (fnmatch patterns over case, format, check and load mode; PEP 440
ranges over the producer's and consumer's torch), the outcome expected (``fail`` or ``error``),
the reason, and optionally an expiry date after which it no longer excuses anything. A record that
matches an entry and has that outcome is an *expected* failure; one that matches and passes is an
*unexpected pass*, which fails the run just as an unexpected failure does.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import sys
from pathlib import Path
from typing import Any, Optional

from packaging.specifiers import SpecifierSet

from harness.breaks import in_range
from harness.errors import HarnessError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (torch 1.13)
    import tomli as tomllib

DEFAULT_FILE = Path(__file__).parent / "data" / "expected.toml"
PATTERN_FIELDS = ("case", "format", "check", "load_mode")


@dataclasses.dataclass(frozen=True)
class Expectation:
    """One known incompatibility."""

    id: str
    reason: str
    outcome: str
    case: str = "*"
    format: str = "*"
    check: str = "*"
    load_mode: str = "*"
    consumer_torch: str = ""
    producer_torch: str = ""
    expires: Optional[datetime.date] = None
    #: the catalog entry (harness/data/breaks.toml) this expectation is: its reason and ranges come from there
    break_id: str = ""

    def expired(self, today: Optional[datetime.date] = None) -> bool:
        return self.expires is not None and (today or datetime.date.today()) > self.expires

    def matches(self, record: dict[str, Any]) -> bool:
        """True when the record is one this entry speaks about (whatever its status)."""
        return (all(fnmatch.fnmatchcase(str(record.get(f, "")), getattr(self, f)) for f in PATTERN_FIELDS)
                and in_range(record["consumer"]["torch"], self.consumer_torch)
                and in_range(record["producer"]["torch"], self.producer_torch))


def load(path: Path = DEFAULT_FILE) -> list[Expectation]:
    """Parse and validate an expectations file; any problem is one line naming the entry."""
    from harness.outputs import check_readable_file

    check_readable_file(Path(path), "expectations file", "pass a TOML file like harness/data/expected.toml")
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{path}: expectations do not parse ({exc})") from None
    listed = document.get("expected", [])
    if not isinstance(listed, list) or not all(isinstance(raw, dict) for raw in listed):
        raise HarnessError(f"{path}: 'expected' must be an array of tables ([[expected]] entries)")
    entries = []
    for raw in listed:
        ident = raw.get("id", "<no id>")
        raw = _from_catalog(path, ident, dict(raw))
        unknown = set(raw) - {f.name for f in dataclasses.fields(Expectation)}
        if unknown or not raw.get("reason") or raw.get("outcome") not in ("fail", "error"):
            raise HarnessError(f"{path}: entry {ident!r} needs id, reason and outcome fail|error "
                               f"(unknown keys: {sorted(unknown) or 'none'})")
        try:
            for key in ("consumer_torch", "producer_torch"):
                SpecifierSet(raw.get(key, ""))
        except Exception as exc:
            raise HarnessError(f"{path}: entry {ident!r} has a bad torch range: {exc}") from None
        entries.append(Expectation(**raw))
    return entries


def _from_catalog(path: Path, ident: str, raw: dict[str, Any]) -> dict[str, Any]:
    """An entry naming ``break = "id"`` takes its reason and torch ranges from the breaks catalog (only there)."""
    if "break" not in raw:
        return raw
    from harness import breaks

    duplicated = sorted({"reason", "consumer_torch", "producer_torch"} & set(raw))
    if duplicated:
        raise HarnessError(f"{path}: entry {ident!r} links break {raw['break']!r}: its {', '.join(duplicated)} "
                           f"come from harness/data/breaks.toml, not from here")
    known = breaks.load()
    if raw["break"] not in known:
        raise HarnessError(f"{path}: entry {ident!r} names break {raw['break']!r}, which is not in "
                           f"harness/data/breaks.toml")
    entry = known[raw.pop("break")]
    return {**raw, "break_id": entry.id, "reason": entry.reason(), "consumer_torch": entry.consumer,
            "producer_torch": entry.producer}


def judge(record: dict[str, Any], expectations: list[Expectation],
          today: Optional[datetime.date] = None) -> Optional[str]:
    """Annotate ``record`` in place with ``expected`` and return a problem, or None when all is as expected.

    Problems: an unexpected failure, or an unexpected pass of an expected failure.
    """
    live = [e for e in expectations if not e.expired(today) and e.matches(record)]
    status = record["status"]
    if status in ("fail", "error"):
        match = next((e for e in live if e.outcome == status), None)
        if match:
            record["expected"] = {"id": match.id, "reason": match.reason}
            return None
        return f"unexpected {status}"
    if status == "pass" and live:
        record["expected"] = {"id": live[0].id, "reason": live[0].reason, "unexpected_pass": True}
        return f"unexpected pass (expected {live[0].outcome}: {live[0].id})"
    return None
