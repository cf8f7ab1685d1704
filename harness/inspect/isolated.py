"""Inspect a file in a forked child under a memory ceiling and a deadline.

The checks in :mod:`harness.inspect.limits` stop every blow-up the harness knows of; this is for
the ones nobody foresaw. The child gets ``RLIMIT_AS`` = its current address space plus
``limits.memory_mb`` and sends its :class:`Inspection` back as JSON on a pipe; a child that outlives
``limits.seconds`` (plus a second of grace) is killed, one that dies or runs out of memory is
reported. Either way the caller gets one :class:`Inspection` with one line of detail.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
from pathlib import Path
from typing import Any, Optional

from harness.inspect import CORRUPT, OVER_LIMITS, READ, Inspection, inspect_file
from harness.inspect.limits import DEFAULT, MB, Limits

#: most bytes of JSON a child may send back
RESULT_BYTES = 64 * MB
GRACE_S = 1.0


def inspect_isolated(path: Path, limits: Limits = DEFAULT,
                     allowlist: Any = READ) -> tuple[Inspection, dict[str, float]]:
    """The file's inspection, and what the child used: ``{"seconds", "max_rss_mb"}``.

    ``allowlist``: torch's weights_only allowlist (None where unknown); :data:`READ` reads it here,
    before forking, so that no child imports torch.
    """
    from harness.inspect import _allowlist, containers  # noqa: F401  (imported before forking)

    if allowlist is READ:
        allowlist = _allowlist()

    read, write = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        _child(path, limits, allowlist, write)
    os.close(write)
    data, timed_out = _collect(read, started + limits.seconds + GRACE_S)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    used = {"seconds": round(time.monotonic() - started, 3), "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    size = _size(path)
    if timed_out:
        return Inspection(str(path), size, OVER_LIMITS, f"not inspected further: inspection took longer than its "
                                                        f"{limits.seconds:g} s budget (stopped)"), used
    try:
        found = _from_json(json.loads(data))
    except (ValueError, TypeError):
        why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.waitstatus_to_exitcode(status)}")
        return Inspection(str(path), size, CORRUPT, f"the inspection crashed ({why}) without a result"), used
    return found, used


def _child(path: Path, limits: Limits, allowlist: Optional[frozenset[str]], write: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        ceiling = _address_space() + limits.memory_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
        try:
            found = inspect_file(path, limits, allowlist)
        except MemoryError:
            found = Inspection(str(path), _size(path), OVER_LIMITS, f"not inspected further: the inspection needed "
                                                                    f"more than {limits.memory_mb:,} MB")
        payload = json.dumps(found.to_json()).encode()[:RESULT_BYTES]
        view = memoryview(payload)
        while view:
            view = view[os.write(write, view):]
    except BaseException:  # noqa: BLE001 - the parent reports a child without a result
        code = 1
    finally:
        os._exit(code)


def _collect(fd: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", True
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return b"", True
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks), False
            total += len(chunk)
            if total <= RESULT_BYTES:
                chunks.append(chunk)
    finally:
        os.close(fd)


def _address_space() -> int:
    """This process's virtual memory size in bytes (Linux), else 0 (the ceiling is then absolute)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _from_json(data: Any) -> Inspection:
    if not isinstance(data, dict):
        raise TypeError("not an inspection")
    return Inspection(**data)
