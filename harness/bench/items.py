"""One benchmark: what ``bench`` (the pytest plugin) and ``bench-compare --interleave`` (its workers) both time."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from harness.bench.sizes import label


def item_id(item: Mapping[str, Any]) -> str:
    """The id of one benchmark request: size, format (or baseline), operation and cache state."""
    return f"{label(item['size_bytes'])}-{item.get('format') or 'baseline'}-{item['operation']}-{item['cache']}"


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark: an operation at a size, for a format (None: a baseline), in a cache state."""

    size_bytes: int
    format: Optional[str]
    operation: str
    cache: str
    kind: str = "format"
    baseline: str = "memcpy"

    @property
    def request(self) -> dict[str, Any]:
        """What a benchmark worker is sent to time this item."""
        return {"size_bytes": self.size_bytes, "format": self.format, "operation": self.operation,
                "cache": self.cache}

    @property
    def id(self) -> str:
        return item_id(self.request)
