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

from harness.errors import HarnessError
from harness.fingerprint import hash_file

MANIFEST_NAME = "manifest.json"
SCHEMA = 1


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


def find_manifests(roots: list[Path]) -> list[Path]:
    """Every manifest under the given folders (a folder may itself be one environment's)."""
    found: list[Path] = []
    for root in roots:
        if not root.exists():
            raise HarnessError(f"{root}: no such folder; pass the folder that `ckpt-harness produce --out` wrote")
        if not root.is_dir():
            raise HarnessError(f"{root}: not a folder; pass the folder that `ckpt-harness produce --out` wrote")
        direct = root / MANIFEST_NAME
        # Hidden folders are produce's staging and replaced copies: never consumed.
        manifests = [direct] if direct.is_file() else sorted(
            path for path in root.glob(f"*/{MANIFEST_NAME}") if not path.parent.name.startswith("."))
        if not manifests:
            raise HarnessError(f"{root}: no {MANIFEST_NAME} found in it or its subfolders; run `ckpt-harness produce "
                               f"--out {root}` first")
        found.extend(manifests)
    return found


def read(path: Path) -> dict[str, Any]:
    """Parse and validate one manifest; any problem is a one-line HarnessError naming the file."""
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: manifest does not parse ({exc}); re-run produce for that environment") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise HarnessError(f"{path}: not a checkpoint-harness manifest of schema {SCHEMA}; re-run produce")
    for key in ("env", "env_id", "entries", "cases"):
        if key not in document:
            raise HarnessError(f"{path}: manifest lacks {key!r}; re-run produce for that environment")
    document["_root"] = str(path.parent)
    return document


def entries(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The artifact entries of a manifest, in production order."""
    yield from document["entries"]


def artifact_path(document: dict[str, Any], entry: dict[str, Any]) -> Path:
    return Path(document["_root"]) / entry["file"]


def verify_artifact(document: dict[str, Any], entry: dict[str, Any]) -> None:
    """Raise a HarnessError when the artifact is missing or its bytes differ from the manifest."""
    path = artifact_path(document, entry)
    if not path.is_file():
        raise HarnessError(f"{path}: listed in the manifest but missing; re-run produce for that environment")
    if path.stat().st_size != entry["file_bytes"] or hash_file(path) != entry["file_hash"]:
        raise HarnessError(f"{path}: file hash does not match its manifest (modified or truncated after produce); "
                           "re-run produce for that environment")
