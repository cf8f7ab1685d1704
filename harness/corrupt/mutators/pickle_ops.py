"""Pickle opcodes altered: an opcode byte replaced, an integer or memo index changed, a string
argument edited (a class or storage name, a dict key), an opcode deleted, an early STOP."""

from __future__ import annotations

import pickle
import random
import struct
from typing import Optional

from harness.corrupt import Mutation, Mutator, Source, register
from harness.corrupt.layout import opcodes
from harness.corrupt.mutators._pickles import pickle_spans, splice

KINDS = ("replace-opcode", "int-argument", "memo-index", "string-argument", "delete-opcode", "early-stop")
#: opcode bytes a replacement is drawn from (all valid opcodes of protocols 0-5)
OPCODE_BYTES = sorted({code[0] for code in (getattr(pickle, n) for n in dir(pickle) if n.isupper())
                       if isinstance(code, bytes) and len(code) == 1})
INT_FORMATS = {"BININT1": "<B", "BININT2": "<H", "BININT": "<i", "BINGET": "<B", "LONG_BINGET": "<I",
               "BINPUT": "<B", "LONG_BINPUT": "<I"}
STRING_OPS = {"SHORT_BINUNICODE": 1, "BINUNICODE": 4, "SHORT_BINSTRING": 1, "BINSTRING": 4, "SHORT_BINBYTES": 1,
              "BINBYTES": 4}


class PickleOps(Mutator):
    name = "pickle-ops"
    description = "alter one pickle opcode: replace it, change its integer/memo/string argument, delete it, STOP early"

    def applies(self, source: Source) -> bool:
        return bool(pickle_spans(source))

    def mutate(self, source: Source, rng: random.Random, index: int) -> Optional[Mutation]:
        span = pickle_spans(source)[0 if rng.random() < 0.8 else rng.randrange(len(pickle_spans(source)))]
        ops = opcodes(source.data, span)
        kind = KINDS[index % len(KINDS)]
        chosen = _choose(ops, kind, rng)
        if chosen is None:
            kind, chosen = "replace-opcode", rng.choice(ops)
        name, arg, offset = chosen
        piece = bytearray(source.data[span[0]: span[1]])
        at = offset - span[0]
        if kind == "replace-opcode":
            piece[at] = rng.choice([b for b in OPCODE_BYTES if b != piece[at]])
        elif kind == "early-stop":
            piece[at] = pickle.STOP[0]
        elif kind in ("int-argument", "memo-index"):
            fmt = INT_FORMATS[name]
            width = struct.calcsize(fmt)
            value = _other_int(int.from_bytes(piece[at + 1: at + 1 + width], "little", signed=fmt == "<i"), fmt, rng)
            piece[at + 1: at + 1 + width] = struct.pack(fmt, value)
            name = f"{name}={value}"
        elif kind == "string-argument":
            width = STRING_OPS[name]
            text_at = at + 1 + width + rng.randrange(len(arg))
            piece[text_at] = piece[text_at] ^ 0x01 or 0x41
            name = f"{name}:{arg!r}"[:60]
        else:  # delete-opcode
            following = [o for _, _, o in ops if o > offset]
            end = (following[0] - span[0]) if following else len(piece)
            del piece[at:end]
        return self.make(kind, f"{offset}:{name}", splice(source, span, bytes(piece)))


def _choose(ops: list, kind: str, rng: random.Random) -> Optional[tuple]:
    if kind in ("replace-opcode", "delete-opcode", "early-stop"):
        return rng.choice(ops[:-1] or ops)
    if kind == "int-argument":
        candidates = [op for op in ops if op[0] in ("BININT1", "BININT2", "BININT")]
    elif kind == "memo-index":
        candidates = [op for op in ops if op[0] in ("BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT")]
    else:
        candidates = [op for op in ops if op[0] in STRING_OPS and op[1]]
    return rng.choice(candidates) if candidates else None


def _other_int(value: int, fmt: str, rng: random.Random) -> int:
    low, high = {"<B": (0, 255), "<H": (0, 65535), "<i": (-2**31, 2**31 - 1), "<I": (0, 2**32 - 1)}[fmt]
    options = [v for v in (0, 1, value - 1, value + 1, value * 2, high, low, rng.randint(low, high))
               if low <= v <= high and v != value]
    return rng.choice(options)


register(PickleOps())
