"""The files and live objects benchmarks work on, one size at a time.

Every subject of a size (the baselines' bytes, each format's payload and files) lives at once,
because their rounds are interleaved (:mod:`harness.bench.interleave`): a 256 MB run holds about
256 MB per format. Moving on to the next size frees them and deletes the files. Nothing outside
the workspace folder is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from harness.bench import payload as payloads
from harness.bench.operations import Subject, saved_file
from harness.bench.rss import Probe
from harness.bench.sizes import label
from harness.bench.touch import storages
from harness.formats import FORMATS


class Workspace:
    """Builds the subjects of each size and measures peak RSS through one probe process."""

    def __init__(self, root: Path, probe: Optional[Probe]) -> None:
        self.root = root
        self.probe = probe
        self._subjects: dict[tuple[int, Optional[str]], Subject] = {}
        self._rss: dict[tuple, dict[str, Any]] = {}

    def subject(self, size_bytes: int, fmt: Optional[str]) -> Subject:
        """The subject for a size and a format (None: the size's baselines), built once; another
        size's subjects are freed first."""
        if any(size != size_bytes for size, _ in self._subjects):
            self.release()
        key = (size_bytes, fmt)
        if key not in self._subjects:
            self._subjects[key] = self._build(size_bytes, fmt)
        return self._subjects[key]

    def _build(self, size_bytes: int, fmt: Optional[str]) -> Subject:
        case = payloads.bench_case(size_bytes)
        folder = self.root / f"{label(size_bytes)}-{fmt or 'baselines'}"
        folder.mkdir(parents=True)
        if fmt is None:
            return Subject(case, size_bytes, folder, list(storages(case.fresh_models()["model"])))
        return Subject(case, size_bytes, folder, [], payloads.build(FORMATS.get(fmt), case))

    def peak_rss(self, subject: Subject, mapped: bool) -> dict[str, Any]:
        """Peak RSS of one load of the subject's file, measured in the probe process (once per variant)."""
        if self.probe is None:
            return {"rss_note": "not measured (--no-rss)"}
        key = (subject.size_bytes, subject.payload.fmt.name, mapped)
        if key not in self._rss:
            self._rss[key] = self.probe.measure(subject.payload.fmt.name, subject.size_bytes, saved_file(subject),
                                                mapped)
        return self._rss[key]

    def release(self) -> None:
        """Free every subject and delete its files."""
        for subject in self._subjects.values():
            shutil.rmtree(subject.folder, ignore_errors=True)
        self._subjects.clear()

    def close(self) -> None:
        self.release()
        if self.probe is not None:
            self.probe.close()
