"""Peak resident memory of a load, measured in a separate process.

The parent starts one child (``python -m harness.bench.rss``) and sends it one JSON request per
line: which format to load, from which file, how. For each request the child warms the file,
returns freed heap memory to the OS, resets its peak-RSS mark (``/proc/self/clear_refs`` ← ``5``),
reads its current RSS as the baseline, loads the file and touches every byte, and answers with the peak RSS above the
baseline (``VmHWM − baseline``). Memory the parent holds never counts, and each request starts
from the child's settled state. Where the peak cannot be reset, the answer says why and carries
no number.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} is missing from {_STATUS}")


def release_free_heap() -> None:
    """Give memory freed by earlier loads back to the OS (glibc ``malloc_trim``), so a load's pages are new.

    Without it a small load reuses the heap the last one freed and shows no RSS growth at all.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        pass


def reset_peak() -> Optional[str]:
    """Reset this process's peak RSS to its current RSS; None on success, else why not."""
    try:
        _CLEAR_REFS.write_text("5")
        if _status_kb("VmHWM") > _status_kb("VmRSS") * 1.01 + 1024:
            return "writing 5 to /proc/self/clear_refs did not reset VmHWM"
        return None
    except OSError as exc:
        return f"the peak RSS cannot be reset here ({exc})"


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Load one file as asked, touching every byte; the peak RSS above the pre-load baseline."""
    from harness.bench.pagecache import warm
    from harness.bench.payload import bench_case
    from harness.formats import FORMATS

    fmt = FORMATS.get(request["format"])
    case = bench_case(request["size_bytes"])
    path = Path(request["path"])
    if fmt.needs_code:
        case.fresh_models()  # the case's template exists before the baseline, as a user's model class would
    warm(path)
    _load_and_touch(fmt, path, case, request["mmap"])  # once unmeasured: first-call costs are not the load's
    gc.collect()
    release_free_heap()
    problem = reset_peak()
    if problem:
        return {"rss_note": problem}
    baseline = _status_kb("VmRSS") * 1024
    _load_and_touch(fmt, path, case, request["mmap"])
    peak = _status_kb("VmHWM") * 1024
    gc.collect()
    size = path.stat().st_size
    return {"peak_rss_bytes": peak - baseline, "peak_rss_multiple": (peak - baseline) / size,
            "rss_note": "warm page cache; VmHWM above the pre-load VmRSS, in a separate process"}


def _load_and_touch(fmt: Any, path: Path, case: Any, mapped: bool) -> None:
    from harness.bench.operations import cpu_location, load_context, load_mode
    from harness.bench.touch import touch
    from harness.formats import LoadRequest

    with load_context(mapped):
        # written by this run
        loaded = fmt.open(path, LoadRequest(load_mode(fmt), cpu_location(fmt), case=case, trusted=True))
    touch(fmt.contents(loaded))


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer one JSON request per line until stdin closes."""
    for line in requests:
        try:
            answer = measure(json.loads(line))
        except Exception as exc:  # the parent records the reason beside the benchmark
            answer = {"rss_note": f"the RSS probe failed: {type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Probe:
    """The parent's side: one child for a whole run; ``measure`` sends a request and waits."""

    def __init__(self, plugins: list[str]) -> None:
        args = [sys.executable, "-m", "harness.bench.rss"] + [a for p in plugins for a in ("--plugin", p)]
        self._child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def measure(self, fmt: str, size_bytes: int, path: Path, mmap: bool) -> dict[str, Any]:
        request = {"format": fmt, "size_bytes": size_bytes, "path": str(path), "mmap": mmap}
        self._child.stdin.write(json.dumps(request) + "\n")
        self._child.stdin.flush()
        line = self._child.stdout.readline()
        return json.loads(line) if line else {"rss_note": "the RSS probe process died"}

    def close(self) -> None:
        self._child.stdin.close()
        self._child.wait(timeout=60)


def main(argv: list[str]) -> int:
    from harness.plugins import load_plugins

    answers, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the answers
    load_plugins([argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--plugin"])
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
