"""The malicious-pickle canary: does this release's ``torch.load`` run code hidden in a checkpoint?

:func:`build` writes a small checkpoint holding a tensor and an object whose ``__reduce__`` tells the
unpickler to call ``open(MARKER, "w")``: harmless (it creates an empty file inside a temporary
folder) but exactly what a real payload would do with ``os.system``. :func:`run_canary` loads it once
per load mode (the release's default ``torch.load``, ``weights_only=True``, ``weights_only=False``),
each time in a throwaway subprocess whose working and temporary folders are a fresh temporary
folder, and reports whether the marker appeared.

Verdicts: ``weights_only=True`` executing the payload is a failure; a *default* load executing it
is a failure too, which ``harness/data/expected.toml`` excuses for releases whose default is a full
unpickle (before 2.6) so the matrix stays green there while the fact is still recorded and printed;
``weights_only=False`` must execute it (otherwise the canary proves nothing: an ``error``).

Run as ``python -m harness.canary PATH MODE`` it is the worker: one ``torch.load``, one JSON line.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from harness.records import Status

#: the load modes the canary tries, in order (the names of :data:`harness.formats.LOAD_MODES`)
MODES = ("default", "weights_only", "unsafe")
CASE, FORMAT, CHECK = "canary", "malicious_pickle", "canary"
MARKER_NAME = "canary-was-executed"
#: seconds one load may take before the worker is killed
LOAD_TIMEOUT_S = 120.0


class MarkerPayload:
    """Unpickling this object calls ``open(marker, "w")``: it creates an empty marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return builtins.open, (self.marker, "w")


def build(folder: Path) -> tuple[Path, Path]:
    """Write the canary checkpoint into ``folder``; return ``(checkpoint, marker it would create)``."""
    import torch

    marker = folder / MARKER_NAME
    path = folder / "canary.pt"
    torch.save({"weights": torch.arange(4, dtype=torch.float32), "payload": MarkerPayload(marker)}, path)
    return path, marker


@dataclasses.dataclass(frozen=True)
class CanaryOutcome:
    """What one load mode did with the canary."""

    mode: str
    #: the marker file appeared: the payload ran
    executed: bool
    #: the load returned (it may have executed the payload or not)
    loaded: bool
    #: ``Type: first line`` of the load's exception, or why the mode was not tried
    error: str = ""
    #: the mode does not exist in this release
    unsupported: bool = False
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        """pass / fail / error / skip, as a record status."""
        if self.unsupported:
            return "skip"
        if self.mode == "unsafe":
            return "pass" if self.executed else "error"
        return "fail" if self.executed else "pass"

    @property
    def detail(self) -> str:
        if self.unsupported:
            return self.error
        if self.executed:
            verdict = {"unsafe": "executed the pickled payload, as documented for weights_only=False "
                                 "(trusted files only)",
                       "default": "DEFAULT torch.load EXECUTED THE PICKLED PAYLOAD: any checkpoint can run code "
                                  "on load",
                       "weights_only": "weights_only=True EXECUTED THE PICKLED PAYLOAD"}[self.mode]
            return verdict
        if self.mode == "unsafe":
            return ("weights_only=False did not execute the payload, so the canary proves nothing: "
                    f"{self.error or 'loaded'}")
        return f"refused, payload not executed: {self.error}" if self.error else "loaded without executing the payload"


def run_canary(timeout: float = LOAD_TIMEOUT_S) -> list[CanaryOutcome]:
    """Load the canary once per mode, each in its own subprocess and temporary folder; the subprocesses run at
    the same time (each spends most of its time importing torch), the outcomes come in MODES order."""
    from harness import compat

    def outcome(mode: str) -> CanaryOutcome:
        if mode != "default" and not compat.has_weights_only():
            return CanaryOutcome(mode, False, False, "this torch.load has no weights_only parameter", unsupported=True)
        return _load_in_subprocess(mode, timeout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(MODES)) as pool:
        return list(pool.map(outcome, MODES))


def _load_in_subprocess(mode: str, timeout: float) -> CanaryOutcome:
    with tempfile.TemporaryDirectory(prefix="ckpt-canary-") as folder:
        path, marker = build(Path(folder))
        env = {**os.environ, "TMPDIR": folder, "TMP": folder, "TEMP": folder}
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "harness.canary", str(path), mode], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            report = _last_json_line(done.stdout)
            if report is None:
                report = {"loaded": False, "error": f"worker exited {done.returncode} without a report: "
                                                    f"{_tail(done.stderr)}"}
        except subprocess.TimeoutExpired:
            report = {"loaded": False, "error": f"load did not finish within {timeout:g} s"}
        return CanaryOutcome(mode, marker.exists(), bool(report.get("loaded")), report.get("error", ""),
                             seconds=round(time.perf_counter() - started, 3))


def _last_json_line(text: str) -> Optional[dict[str, Any]]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def records(outcomes: list[CanaryOutcome], expectations: Optional[list] = None) -> list[Any]:
    """One :class:`harness.records.Record` per outcome, judged against the expectations."""
    from harness import env as envmod
    from harness import expectations as known_module
    from harness.records import Record

    here = envmod.brief(envmod.describe("cpu", optional=False))
    known = known_module.load() if expectations is None else expectations
    out = []
    for outcome in outcomes:
        record = Record(producer=here, consumer=here, case=CASE, format=FORMAT, check=CHECK, load_mode=outcome.mode,
                        status=outcome.status, detail=outcome.detail, duration_s=outcome.seconds,
                        artifact="(temporary canary checkpoint)")
        record.problem = known_module.judge(record.__dict__, known)
        out.append(record)
    return out


def _worker(path: str, mode: str) -> None:
    """Load ``path`` once in ``mode`` and print ``{"loaded": bool, "error": str}`` as one JSON line."""
    import torch

    from harness import compat
    from harness.formats._torch_pickle import WEIGHTS_ONLY_FOR_MODE
    from harness.records import describe_exception

    try:
        torch.load(path, **compat.torch_load_kwargs(WEIGHTS_ONLY_FOR_MODE[mode]))
        report = {"loaded": True, "error": ""}
    except Exception as exc:  # the refusal is the expected outcome for weights_only
        report = {"loaded": False, "error": describe_exception(exc)}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
