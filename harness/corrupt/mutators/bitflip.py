"""Bit flips: one to eight bits, aimed at a structural region (tensor data, the pickle, the zip
directory, the safetensors header) or anywhere."""

from __future__ import annotations

import random
from typing import Optional

from harness.corrupt import Mutation, Mutator, Source, register

REGIONS = ("anywhere", "tensor-data", "pickle", "central-directory", "local-entries", "header", "header-length")


class BitFlip(Mutator):
    name = "bitflip"
    description = "flip 1-8 random bits inside one region of the file"

    def applies(self, source: Source) -> bool:
        return len(source.data) > 0

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        layout = source.layout
        regions = [r for r in REGIONS if r == "anywhere" or layout.region(r)]
        region = regions[index % len(regions)]
        start, end = (0, len(source.data)) if region == "anywhere" else layout.span(region)
        data = bytearray(source.data)
        flips = []
        for _ in range(rng.randint(1, 8)):
            offset, bit = rng.randrange(start, end), rng.randrange(8)
            data[offset] ^= 1 << bit
            flips.append(f"{offset}.{bit}")
        return self.make(region, ",".join(flips), bytes(data))


register(BitFlip())
