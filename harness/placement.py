"""How produce puts an environment folder in place: staging, merging, replacing and cleaning up.

Layout under ``--out``::

    <env-id>/                       an environment folder; ``.ckpt-harness-env`` marks it as the harness's
    .<env-id>.<pid>.<random>/       a run's staging folder; ``.ckpt-harness-staging`` holds the owner's pid
    .<env-id>.lock                  the lock every run takes to land its staging folder

- A run builds everything in its own staging folder, then, under the environment's lock, either
  renames it into place (new folder, or ``--replace``), or moves its case folders into the
  existing folder and rewrites the manifest last (:func:`merge_into`). So two runs with
  different cases both land; a run whose cases the folder already holds is refused.
- ``--replace`` deletes only a folder the harness made: one carrying the marker, or (folders
  made before the marker existed) one whose every file its manifest lists. A symbolic link, a
  file, or a user's folder is refused with one line.
- A staging folder whose owner process is gone (a killed run) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import HarnessError
from harness.outputs import FolderLock, make_folder

#: marks a folder the harness made (written into every environment folder)
MARKER = ".ckpt-harness-env"
#: marks a staging folder; holds the owning process id
STAGING_MARKER = ".ckpt-harness-staging"
MANIFEST_NAME = "manifest.json"
_HIDDEN_RUN_FOLDER = re.compile(r"^\..+\.\d+\.\w+$")


def new_staging(target: Path) -> Path:
    """A fresh hidden staging folder beside ``target`` (stale ones of killed runs are removed first)."""
    make_folder(target.parent)
    clean_stale(target.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    except OSError as exc:
        raise HarnessError(f"--out {target.parent}: cannot write in it ({exc.strerror or exc})") from None
    (staging / STAGING_MARKER).write_text(str(os.getpid()))
    return staging


@contextlib.contextmanager
def env_lock(target: Path) -> Iterator[None]:
    """Hold the environment folder's lock (waiting for another run to land its folder)."""
    with FolderLock(target.parent / f".{target.name}.lock", f"{target}: locked by another run"):
        yield


def check_ours(target: Path, must_exist: bool = True) -> None:
    """Refuse, with one line, a target that is a link, a file, or a folder the harness did not make."""
    if target.is_symlink():
        raise HarnessError(f"{target} is a symbolic link; produce writes environment folders itself: remove the "
                           "link or choose another --out")
    if not target.exists():
        if must_exist:
            raise HarnessError(f"{target}: no such environment folder")
        return
    if not target.is_dir():
        raise HarnessError(f"{target} is a file, not an environment folder; move it away or choose another --out")
    stranger = _not_ours(target)
    if stranger:
        raise HarnessError(f"{target} was not made by ckpt-harness produce ({stranger}); move it away or choose "
                           "another --out")


def _not_ours(target: Path) -> str:
    """Why ``target`` is not a folder the harness made, or "" when it is."""
    if (target / MARKER).is_file() and not (target / MARKER).is_symlink():
        return ""
    if not (target / MANIFEST_NAME).is_file():
        return f"it has no {MANIFEST_NAME}"
    from harness.contracts import ArtifactEntry, BuiltCase
    from harness.manifest import read_model
    from harness.trust import SEAL_NAME

    manifest = read_model(target / MANIFEST_NAME)
    listed = {MANIFEST_NAME, SEAL_NAME, *(e.file for e in manifest.entries if isinstance(e, ArtifactEntry)),
              *(c.outputs_file for c in manifest.cases.values() if isinstance(c, BuiltCase))}
    for folder, dirs, files in os.walk(target):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            relative = os.path.relpath(os.path.join(folder, name), target)
            if relative not in listed or os.path.islink(os.path.join(folder, name)):
                return f"its manifest does not list {relative}"
    return ""


def cases_held(target: Path) -> set[str]:
    """The case names an environment folder's manifest holds."""
    from harness.manifest import read_model

    manifest = read_model(target / MANIFEST_NAME)
    return set(manifest.cases) | {entry.case for entry in manifest.entries}


def swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing (and deleting) an existing ``target``."""
    _finish(staging)
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        (target / STAGING_MARKER).write_text(str(os.getpid()))  # a kill before rmtree leaves it cleanable
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)


def merge_into(staging: Path, target: Path, cases: list[str],
               write: Callable[[Path, dict[str, Any]], None]) -> None:
    """Move the staged cases' files into ``target``, then rewrite its manifest with their entries (last)."""
    from harness.manifest import read

    existing = read(target / MANIFEST_NAME)
    existing.pop("_root", None)
    added = json.loads((staging / MANIFEST_NAME).read_text())
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = path.relative_to(staging)
        if relative.name in (MANIFEST_NAME, STAGING_MARKER) and len(relative.parts) == 1:
            continue
        destination = target / relative
        if destination.exists() or destination.is_symlink():
            raise HarnessError(f"{destination} already exists; pass --replace to overwrite {target}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        path.rename(destination)
    existing["cases"].update(added["cases"])
    existing["entries"].extend(added["entries"])
    (target / MARKER).write_text("made by ckpt-harness produce\n")
    write(target / MANIFEST_NAME, existing)


def _finish(staging: Path) -> None:
    (staging / STAGING_MARKER).unlink(missing_ok=True)
    (staging / MARKER).write_text("made by ckpt-harness produce\n")


def clean_stale(out: Path) -> list[Path]:
    """Remove the staging (and replaced) folders of runs that are no longer alive; return them."""
    removed: list[Path] = []
    try:
        children = list(out.iterdir())
    except OSError:
        return removed
    for child in children:
        if not _HIDDEN_RUN_FOLDER.match(child.name) or child.is_symlink() or not child.is_dir():
            continue
        marker = child / STAGING_MARKER
        if marker.is_symlink() or not marker.is_file():
            continue  # not ours, or being created right now
        try:
            pid = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True
