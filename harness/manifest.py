"""Manifests: what a producer saved and the fingerprints a consumer judges it by.

Layout of one producing environment::

    ARTIFACTS/<env-id>/manifest.json          written last, atomically
    ARTIFACTS/<env-id>/<case>/<format><suffix> the artifacts
    ARTIFACTS/<env-id>/outputs/<case>.pt      forward outputs for tolerance compares

An artifact without a manifest entry is never consumed. Reading never writes under ARTIFACTS.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from harness import containers
from harness.contracts import MANIFEST_SCHEMA, Manifest, parse_manifest
from harness.errors import HarnessError
from harness.outputs import check_readable_file

MANIFEST_NAME = "manifest.json"
SCHEMA = MANIFEST_SCHEMA


def write_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=1, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


#: how deep under a folder passed to consume manifests are looked for (``corpus/<release>/<env-id>/``)
MAX_DEPTH = 2
#: a manifest larger than this is refused before it is read
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


def find_manifests(roots: list[Path]) -> list[Path]:
    """Every manifest under the given folders: the folder's own, else those up to :data:`MAX_DEPTH`
    levels below it (a folder that holds a manifest is not searched further; hidden folders, which
    are produce's staging and replaced copies, never)."""
    found: list[Path] = []
    for root in roots:
        if not root.exists():
            raise HarnessError(f"{root}: no such folder; pass the folder that `ckpt-harness produce --out` wrote")
        if not root.is_dir():
            raise HarnessError(f"{root}: not a folder; pass the folder that `ckpt-harness produce --out` wrote")
        manifests = _manifests_below(root, MAX_DEPTH)
        if not manifests:
            raise HarnessError(f"{root}: no {MANIFEST_NAME} found in it or its subfolders (up to {MAX_DEPTH} levels); "
                               f"run `ckpt-harness produce --out {root}` first")
        found.extend(manifests)
    return found


def _manifests_below(folder: Path, depth: int) -> list[Path]:
    direct = folder / MANIFEST_NAME
    if direct.is_file():
        return [direct]
    if depth == 0:
        return []
    try:
        children = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as exc:
        raise HarnessError(f"{folder}: cannot list it ({exc.strerror or exc})") from None
    return [path for child in children for path in _manifests_below(child, depth - 1)]


def read(path: Path) -> dict[str, Any]:
    """Parse and validate one manifest (:class:`harness.contracts.Manifest`); any problem is a
    one-line HarnessError naming the file and the field. Returns the validated document as a dict."""
    document = read_model(path).model_dump(by_alias=True, exclude_unset=True)
    document["_root"] = str(path.parent)
    return document


def read_model(path: Path) -> Manifest:
    """The typed manifest at ``path``."""
    check_readable_file(path, "manifest", "re-run produce for that environment")
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise HarnessError(f"{path}: {size} bytes, larger than any manifest produce writes; re-run produce")
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: manifest cannot be read ({exc.strerror or exc}); re-run produce") from None
    return parse_manifest(raw, path)


def entries(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The artifact entries of a manifest, in production order."""
    yield from document["entries"]


def artifact_path(document: dict[str, Any], entry: dict[str, Any]) -> Path:
    """The artifact's file, resolved; it must lie inside the manifest's own folder (else a HarnessError)."""
    return contained_path(Path(document["_root"]), entry.get("file"), "file")


def outputs_path(document: dict[str, Any], case: str) -> Path:
    """A case's stored forward-outputs file, resolved; it must lie inside the manifest's own folder."""
    return contained_path(Path(document["_root"]), document["cases"][case].get("outputs_file"), "outputs_file")


def contained_path(root: Path, relative: Any, field: str) -> Path:
    """``root / relative`` resolved (symlinks followed); a HarnessError unless it is an existing path inside
    ``root``. A manifest names files relative to its folder: ``../x``, an absolute path or a symlink
    leading out of the folder would make the harness read (and unpickle) a file the producer never wrote."""
    manifest = root / MANIFEST_NAME
    if not isinstance(relative, str) or not relative:
        raise HarnessError(f"{manifest}: {field} {relative!r} is not a relative file path; re-run produce")
    if Path(relative).is_absolute():
        raise HarnessError(f"{manifest}: {field} {relative!r} is an absolute path; a manifest names files inside "
                           "its own folder")
    try:
        base = root.resolve(strict=True)
        resolved = (root / relative).resolve(strict=True)
    except FileNotFoundError:
        raise HarnessError(f"{root / relative}: listed in the manifest but missing; re-run produce for that "
                           "environment") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a too-long name
        raise HarnessError(f"{manifest}: {field} {relative!r} does not resolve ({exc})") from None
    if not resolved.is_relative_to(base):
        raise HarnessError(f"{manifest}: {field} {relative!r} resolves to {resolved}, outside the manifest's folder; "
                           "refused")
    return resolved


def verify_artifact(document: dict[str, Any], entry: dict[str, Any]) -> None:
    """Raise a HarnessError when the artifact is missing or its bytes differ from the manifest."""
    path = artifact_path(document, entry)  # resolved, and refused when it leads out of the folder
    if not (path.is_file() or path.is_dir()):
        raise HarnessError(f"{path}: listed in the manifest but missing; re-run produce for that environment")
    try:
        size, digest = containers.artifact_bytes(path), containers.artifact_hash(path)
    except containers.ContainerError as exc:
        raise HarnessError(f"{exc}; re-run produce for that environment") from None
    if size != entry["file_bytes"] or digest != entry["file_hash"]:
        raise HarnessError(f"{path}: file hash does not match its manifest (modified or truncated after produce); "
                           "re-run produce for that environment")
