"""Hand-assembled pickles and containers for the hostile-input tests. Nothing here unpickles anything.

Every payload is built opcode by opcode (see :mod:`pickletools` for the opcode table), so a test
can plant a global, a lie about a length or a shared-reference bomb without ever creating the
object it describes. Commands in payloads only ``touch`` a marker file the test owns, and the
tests assert that the marker never appears.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
MARK = b"("
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
NONE = b"N"
TUPLE1, TUPLE2, TUPLE3 = b"\x85", b"\x86", b"\x87"
TUPLE = b"t"
DUP = b"2"
REDUCE = b"R"
BUILD = b"b"
NEWOBJ = b"\x81"
SETITEM, SETITEMS = b"s", b"u"
APPEND = b"a"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
BINPERSID = b"Q"


def text(value: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE for ``value``."""
    data = value.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def glob(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0-3 style: text lines)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both names as literal strings (protocol 4)."""
    return text(module) + text(name) + STACK_GLOBAL


def put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)``: the callable's opcodes, a tuple of the args, REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def program(body: bytes, proto: bytes = PROTO2) -> bytes:
    return proto + body + STOP


def in_dict(key: str, value: bytes, proto: bytes = PROTO2) -> bytes:
    """``{"weight": None, key: value}``: a payload hidden beside ordinary data."""
    return proto + EMPTY_DICT + MARK + text("weight") + NONE + text(key) + value + SETITEMS + STOP


def tensor(key: str = "0", numel: int = 3) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, 0, (numel,), (1,), False, OrderedDict())`` as torch writes it."""
    storage = MARK + text("storage") + glob("torch", "FloatStorage") + text(key) + text("cpu") + integer(numel) + TUPLE
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage + BINPERSID, integer(0),
                integer(numel) + TUPLE1, integer(1) + TUPLE1, b"\x89", call(glob("collections", "OrderedDict")))


def torch_zip(data_pkl: bytes, extra: dict[str, bytes] | None = None, version: bytes = b"3\n") -> bytes:
    """A torch.save-style zip (stored entries under ``archive/``) holding ``data_pkl``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", version)
        archive.writestr("archive/byteorder", b"little")
        for name, data in (extra or {}).items():
            archive.writestr(f"archive/{name}", data)
    return buffer.getvalue()


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_stream(object_pkl: bytes, keys_pkl: bytes | None = None, tail: bytes = b"") -> bytes:
    """A pre-1.6 torch.save stream: magic, protocol, sys_info, the object pickle, the keys, storage data.

    The headers are plain data (ints, a dict, a list), pickled by :func:`pickle.dumps`.
    """
    header = (pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
              + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    return header + object_pkl + (keys_pkl if keys_pkl is not None else pickle.dumps([], protocol=2)) + tail


def deflate_bomb(inflated_mb: int) -> tuple[bytes, int]:
    """Raw deflate data that inflates to ``inflated_mb`` MiB of zeros, made without inflating it here.

    One MiB of zeros is compressed once, ending in a full flush (which resets the window), so its
    compressed block can be repeated; a final empty block ends the stream.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * inflated_mb + compressor.flush(zlib.Z_FINISH), inflated_mb << 20


def zip_with_raw_entries(entries: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip written by hand: name → (raw deflate data, declared inflated size, compression method).

    Stored entries (method 0) get their CRC; a deflated entry's CRC is left 0: nothing reads it to
    the end (a reader that did would fail the CRC check there, after inflating everything, which is
    the point of the test).
    """
    local, central, offset = b"", b"", 0
    for name, (data, size, method) in entries.items():
        encoded = name.encode()
        crc = zlib.crc32(data) if method == 0 else 0
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(encoded), 0)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                               len(encoded), 0, 0, 0, 0, 0, offset) + encoded
        local += header + encoded + data
        offset += len(header) + len(encoded) + len(data)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    return local + central + end


def safetensors_file(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data
