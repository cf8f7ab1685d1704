"""The torch releases the harness knows how to install, from the one table ``data/releases.toml``.

``noxfile.py`` reads the same file, so the matrix and ``ckpt-harness check --torch`` agree on
which torchvision, Python and pins go with each release.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TABLE = Path(__file__).parent / "data" / "releases.toml"


@dataclass(frozen=True)
class Release:
    """A torch release and what must be installed beside it."""

    torch: str
    python: str
    torchvision: Optional[str] = None
    pins: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu", "cuda")

    def requirements(self) -> list[str]:
        """pip requirement strings: torch, its matched torchvision, its pins."""
        packages = [f"torch=={self.torch}", *self.pins]
        if not any(p.startswith("numpy") for p in self.pins):
            packages.append("numpy")  # never optional: checkpoints hold numpy values (issue 11)
        if self.torchvision:
            packages.append(f"torchvision=={self.torchvision}")
        return packages


def parse(table: dict[str, Any]) -> dict[str, Release]:
    """Releases by name from a parsed ``releases.toml``."""
    return {name: Release(name, row["python"], row.get("torchvision"), tuple(row.get("pins", ())),
                          tuple(row.get("devices", ("cpu", "cuda"))))
            for name, row in table["releases"].items()}


def load_table() -> dict[str, Any]:
    """The parsed packaged table (read by path: the noxfile loads this module without torch)."""
    return tomllib.loads(TABLE.read_text(encoding="utf-8"))


RELEASES: dict[str, Release] = parse(load_table())


def get(name: str) -> Release:
    """The release called ``name``, or a ValueError naming the known ones."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"unknown torch release {name!r}; known: {', '.join(RELEASES)} "
                         f"(harness/data/releases.toml)") from None
