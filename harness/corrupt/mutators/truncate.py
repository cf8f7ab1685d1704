"""Truncations at cut points chosen by structure: empty, inside the header, inside tensor data,
inside the pickle, inside the zip central directory and its end record, one byte short."""

from __future__ import annotations

import random
from typing import Optional

from harness.corrupt import Mutation, Mutator, Source, register

#: regions to cut inside, tried in this order (index modulo the list), those the file has
CUT_REGIONS = ("central-directory", "end-of-central-directory", "tensor-data", "pickle", "header",
               "storage-keys", "local-entries")


class Truncate(Mutator):
    name = "truncate"
    description = "cut the file short: empty, first bytes, inside each structural region, last byte missing"

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        data, layout = source.data, source.layout
        points = ["empty", "first-bytes", "last-byte"] + [r for r in CUT_REGIONS if layout.region(r)]
        kind = points[index % len(points)]
        if kind == "empty":
            cut = 0
        elif kind == "first-bytes":
            cut = rng.randrange(1, min(64, len(data)))
        elif kind == "last-byte":
            cut = len(data) - 1
        else:
            start, end = layout.span(kind)
            cut = rng.randrange(start, end)
        return self.make(kind, f"{cut}/{len(data)}", data[:cut])


register(Truncate())
