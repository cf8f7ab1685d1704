"""The page cache: is a file's data in memory (warm) or only on disk (cold)?

``drop`` writes a file's dirty pages back (fsync) and asks the kernel to evict them
(``posix_fadvise(POSIX_FADV_DONTNEED)``), then checks with ``mincore`` on a fresh mapping that no
page is resident. A measurement is labelled "cold" only after that check passes; otherwise the
reason is kept and nothing is labelled cold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import tempfile
from pathlib import Path
from typing import Optional

_PAGE = mmap.PAGESIZE
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def resident_pages(path: Path) -> tuple[int, int]:
    """``(resident, total)`` pages of ``path`` in the page cache, from ``mincore`` on a read-only mapping.

    Mapping a file faults nothing in, so the count is not disturbed by asking.
    """
    size = os.path.getsize(path)
    total = (size + _PAGE - 1) // _PAGE
    if size == 0:
        return 0, 0
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            vector = (ctypes.c_ubyte * total)()
            if libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore on {path} failed")
            return sum(byte & 1 for byte in vector), total
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def fsync(path: Path) -> None:
    """Write ``path``'s dirty pages to the device and wait for it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def drop(path: Path) -> Optional[str]:
    """Evict ``path`` from the page cache; None when verified gone, else why it is not cold."""
    if not hasattr(os, "posix_fadvise"):
        return "os.posix_fadvise is missing on this platform: pages cannot be dropped"
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    try:
        resident, total = resident_pages(path)
    except OSError as exc:
        return f"mincore could not verify the drop: {exc}"
    if resident:
        return f"{resident} of {total} pages stayed in the page cache after POSIX_FADV_DONTNEED"
    return None


def warm(path: Path, chunk: int = 16 << 20) -> Optional[str]:
    """Read ``path`` once so all its pages are cached; None when verified warm, else why not."""
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(chunk)
        while handle.readinto(buffer):
            pass
    resident, total = resident_pages(path)
    return None if resident == total else f"only {resident} of {total} pages are cached after reading the file"


def cold_unavailable(folder: Path) -> Optional[str]:
    """None when files in ``folder`` can be verifiably dropped from the page cache, else why not."""
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix="cache-probe-", delete=False)
    try:
        handle.write(os.urandom(1 << 20))
        handle.close()
        return drop(Path(handle.name))
    except OSError as exc:
        return f"page-cache control failed in {folder}: {exc}"
    finally:
        os.unlink(handle.name)
