"""Where the harness writes: output paths checked before anything is written, and files that are
written whole or not at all.

- :func:`check_output_file` / :func:`check_output_folder`: refuse, with one line, an output that is
  a folder where a file belongs (or the reverse), a FIFO or device, a path under ``/proc``,
  ``/sys`` or ``/dev``, or a path inside an artifacts folder (nothing under one is ever modified).
- :class:`OutputFile`: a results file is written under an exclusive lock (a second run writing
  the same file is refused with one line, so two runs never interleave), into a hidden
  temporary file beside it that replaces the target only when the run completes. A run that
  fails or is killed leaves the previous file as it was; its temporary file is removed by the
  next run that takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterable, Optional

from harness.errors import HarnessError

#: pseudo file systems nothing is ever written to
SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))
MANIFEST_NAME = "manifest.json"


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _under_system_folder(path: Path) -> Optional[Path]:
    resolved = _resolved(path)
    return next((root for root in SYSTEM_FOLDERS if resolved == root or root in resolved.parents), None)


def check_readable_file(path: Path, what: str, hint: str) -> None:
    """Refuse, with one line, a path that is not an existing regular file (a folder, FIFO, device)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise HarnessError(f"no such {what}: {path}; {hint}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read this {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise HarnessError(f"{path}: is a folder, not a {what}; {hint}")
    if not stat.S_ISREG(mode):
        raise HarnessError(f"{path}: not a regular file (a FIFO, socket or device); pass a {what}")


def artifacts_folder_around(path: Path, roots: Iterable[Path] = ()) -> Optional[Path]:
    """The artifacts folder ``path`` lies in: one of ``roots``, or any folder above it holding a manifest."""
    resolved = _resolved(path)
    for root in roots:
        root = _resolved(root)
        if resolved == root or root in resolved.parents:
            return root
    for folder in resolved.parents:
        if (folder / MANIFEST_NAME).is_file():
            return folder
    return None


def check_output_file(path: Path, what: str = "--results", inputs: Iterable[Path] = ()) -> None:
    """Refuse, before anything is written, an output file that cannot or must not be written."""
    system = _under_system_folder(path)
    if system:
        raise HarnessError(f"{what} {path}: under {system}, which is not a place for output files")
    if path.is_symlink() or path.exists():
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise HarnessError(f"{what} {path}: cannot use it ({exc.strerror or exc})") from None
        if stat.S_ISDIR(mode):
            raise HarnessError(f"{what} {path}: is a folder; pass a file name (e.g. {path / 'results.jsonl'})")
        if not stat.S_ISREG(mode):
            raise HarnessError(f"{what} {path}: not a regular file (a FIFO, socket or device); pass a file name")
    inside = artifacts_folder_around(path, inputs)
    if inside:
        raise HarnessError(f"{what} {path}: inside the artifacts folder {inside}, which is never modified; "
                           "write it elsewhere")
    _check_parents(path.parent, what, path)


def check_output_folder(path: Path, what: str = "--out") -> None:
    """Refuse an output folder that is a file, a symlink to elsewhere in /proc, or has a file among its parents."""
    system = _under_system_folder(path)
    if system:
        raise HarnessError(f"{what} {path}: under {system}, which is not a place for output folders")
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{what} {path}: is a file, not a folder; pass a folder")
    _check_parents(path, what, path)


def _check_parents(folder: Path, what: str, target: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"{what} {target}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and parent == _first_existing(folder):
                raise HarnessError(f"{what} {target}: {parent} is not writable")
            return


def _first_existing(folder: Path) -> Path:
    return next(p for p in [folder, *folder.parents] if p.exists())


def make_folder(path: Path, what: str = "--out") -> None:
    """``mkdir -p`` that fails with one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{what} {path}: cannot create it ({exc.strerror or exc})") from None


class FolderLock:
    """An exclusive ``flock`` on a hidden lock file; ``wait=False`` refuses instead of waiting."""

    def __init__(self, path: Path, busy: str, wait: bool = True) -> None:
        self.path, self.busy, self.wait = path, busy, wait
        self._fd: Optional[int] = None

    def __enter__(self) -> FolderLock:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HarnessError(f"{self.path}: cannot create the lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise HarnessError(self.busy) from None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


class OutputFile:
    """A file written whole or not at all, by one run at a time (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: Optional[FolderLock] = None
        self._stream: Optional[IO[str]] = None
        self._temp: Optional[Path] = None
        self._closed = False

    def open(self) -> None:
        """Check the path now; the lock and the temporary file are taken at the first write."""
        check_output_file(self.path)

    def _start(self) -> IO[str]:
        if self._stream is None:
            folder = self.path.parent
            make_folder(folder, "--results")
            self._lock = FolderLock(folder / f".{self.path.name}.lock",
                                    f"{self.path}: another ckpt-harness run is writing it now; wait for it to finish "
                                    "or choose another --results", wait=False).__enter__()
            for stale in folder.glob(f".{self.path.name}.*.part"):  # left by killed runs (we hold the lock)
                stale.unlink(missing_ok=True)
            handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
            self._temp = Path(temp)
            os.chmod(handle, _file_mode(self.path))
            self._stream = os.fdopen(handle, "w", encoding="utf-8")
        return self._stream

    def write(self, text: str) -> None:
        stream = self._start()
        stream.write(text)
        stream.flush()

    def close(self, completed: bool = True) -> None:
        """Replace the target with what was written (``completed``), else drop it; release the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if completed:
                stream = self._start()  # a run with nothing to write still leaves an (empty) file
                stream.flush()
                os.fsync(stream.fileno())
                stream.close()
                os.replace(self._temp, self.path)  # type: ignore[arg-type]
                self._temp = None
        finally:
            if self._stream and not self._stream.closed:
                self._stream.close()
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)
            if self._lock:
                self._lock.__exit__()
            self._stream = self._temp = self._lock = None


def _file_mode(path: Path) -> int:
    """The existing file's permission bits, else what the umask gives a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
