"""Trust: which artifact folders may reach a full unpickle.

A manifest sits in the same folder as the files it lists, so its hashes prove nothing about who
wrote them. ``produce`` therefore *seals* each environment folder it writes: ``manifest.json.sig``
lists the SHA-256 of every file in the folder and carries an HMAC-SHA256 over that list, made with
a per-user secret key kept outside every artifacts folder (:func:`key_path`: ``$CKPT_HARNESS_KEY_FILE``,
else ``$XDG_CONFIG_HOME/checkpoint-harness/key``, else ``~/.config/checkpoint-harness/key``;
created with mode 0600 by the first ``produce``).

A consumer trusts an artifact when the seal verifies with its own key and the artifact's bytes
have the SHA-256 the seal lists (so: this user's ``produce`` wrote it, and nothing changed it
since), or when the user says so (``--trust``, or ``CKPT_HARNESS_TRUST=1``, e.g. for CI artifacts
from one's own workflow). An untrusted artifact is never fully unpickled: see
:func:`needs_trust` and :class:`harness.compat.RefuseFullUnpickle`.

The seal covers a folder at rest (copied, downloaded, edited); a process that rewrites files
while the harness reads them is outside this model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Any, Iterable, Optional

from harness import compat
from harness.errors import HarnessError

KEY_ENV = "CKPT_HARNESS_KEY_FILE"
TRUST_ENV = "CKPT_HARNESS_TRUST"
SEAL_NAME = "manifest.json.sig"
SCHEME = "checkpoint-harness-hmac-sha256/1"
KEY_BYTES = 32
#: a seal larger than this is not read (a real one lists a few hundred files)
MAX_SEAL_BYTES = 16 * 1024 * 1024
UNTRUSTED = ("not trusted: the folder is not sealed by this user's produce (no valid manifest.json.sig for the "
             f"key in ${KEY_ENV} or ~/.config/checkpoint-harness/key), or the file changed since; a full "
             "unpickle runs code from the file: pass --trust only if you trust where it came from")


def key_path() -> Path:
    """Where this user's signing key lives (never inside an artifacts folder)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "checkpoint-harness" / "key"


def load_key(create: bool = False) -> Optional[bytes]:
    """This user's key; created (0600) when ``create`` and absent; None when absent or unusable."""
    path = key_path()
    if create and not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another produce made it meanwhile
        except OSError as exc:
            raise HarnessError(f"cannot create the signing key {path} ({exc.strerror}); set {KEY_ENV} to a "
                               "writable path outside the artifacts folder") from None
        else:
            with os.fdopen(handle, "w") as stream:
                stream.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_mode & 0o077:
            raise HarnessError(f"the signing key {path} is readable by other users; chmod 600 it")
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.encode() if len(text) >= 2 * KEY_BYTES else None


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _mac(key: bytes, files: dict[str, str]) -> str:
    body = json.dumps({"scheme": SCHEME, "files": files}, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def files_under(folder: Path, skip: Iterable[str] = ()) -> list[str]:
    """Relative (posix) paths of the regular files under ``folder``, less the seal and the names in ``skip``."""
    left_out = {SEAL_NAME, *skip}
    return [path.relative_to(folder).as_posix() for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.is_symlink() and path.name not in left_out]


def seal(folder: Path, previous: Optional[Seal] = None, fresh: Optional[Iterable[str]] = None) -> Path:
    """Write ``folder/manifest.json.sig``: the SHA-256 of the files this user's produce wrote there, signed.

    A new or replaced folder (``fresh`` None): every regular file in it. A folder a run merged its cases
    into: the ``fresh`` files it wrote, plus those the folder's ``previous`` verified seal listed and that
    still have the sealed bytes; a file someone else put there never becomes trusted by a merge."""
    key = load_key(create=True)
    if key is None:
        raise HarnessError(f"the signing key {key_path()} is unusable (not a file, or too short); remove it so that "
                           "produce makes a new one")
    written = files_under(folder) if fresh is None else [name for name in fresh if (folder / name).is_file()]
    files = {name: _digest(folder / name) for name in written}
    if fresh is not None and previous is not None:
        for name, digest in previous.files.items():
            if name not in files and (folder / name).is_file() and hmac.compare_digest(_digest(folder / name), digest):
                files[name] = digest
    target = folder / SEAL_NAME
    temp = folder / f".{SEAL_NAME}.tmp"
    temp.write_text(json.dumps({"scheme": SCHEME, "files": files, "mac": _mac(key, files)}, indent=1, sort_keys=True))
    os.replace(temp, target)
    return target


@dataclasses.dataclass
class Seal:
    """A verified seal: the files this user's produce wrote in ``folder`` and their SHA-256."""

    folder: Path
    files: dict[str, str]

    def covers(self, path: Path) -> bool:
        """True when ``path`` (inside the folder) has exactly the bytes produce sealed; a folder artifact
        (DCP, sharded safetensors) when every file in it does and nothing else is there (no link)."""
        try:
            base = self.folder.resolve(strict=True)
            target = Path(path).resolve(strict=True)
            if target.is_dir():
                inside = list(target.rglob("*"))
                if any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in inside):
                    return False
                files = [p for p in inside if p.is_file()]
                return bool(files) and all(self._matches(base, p) for p in files)
            return self._matches(base, target)
        except (OSError, ValueError):
            return False

    def _matches(self, base: Path, path: Path) -> bool:
        relative = path.relative_to(base).as_posix()
        return relative in self.files and hmac.compare_digest(_digest(path), self.files[relative])


def verify(folder: Path) -> Optional[Seal]:
    """The folder's seal when it verifies with this user's key (and covers manifest.json), else None."""
    path = Path(folder) / SEAL_NAME
    try:
        key = load_key()
        if key is None or not path.is_file() or path.stat().st_size > MAX_SEAL_BYTES:
            return None
        document: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    files = document.get("files")
    if (document.get("scheme") != SCHEME or not isinstance(files, dict) or not isinstance(document.get("mac"), str)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        return None
    if not hmac.compare_digest(_mac(key, files), document["mac"]):
        return None
    found = Seal(Path(folder), files)
    return found if found.covers(Path(folder) / "manifest.json") else None


def explicit(flag: bool) -> bool:
    """The user's word: ``--trust``, or ``CKPT_HARNESS_TRUST=1`` in the environment (for CI)."""
    return flag or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


class Trust:
    """Decides per artifact file: the user's word, or a seal that verifies and covers the file."""

    def __init__(self, trust_all: bool = False) -> None:
        self.trust_all = trust_all
        self._seals: dict[Path, Optional[Seal]] = {}
        self._lock = threading.Lock()  # consume.collect asks from several threads

    def trusted(self, folder: Path, path: Path) -> bool:
        if self.trust_all:
            return True
        key = Path(folder).resolve()
        with self._lock:
            if key not in self._seals:
                self._seals[key] = verify(key)
            found = self._seals[key]
        return found is not None and found.covers(path)


def full_unpickle(pickled: bool, mode: str, unpickles: bool = False) -> bool:
    """True when the load is a full unpickle in this release: a ``torch.load`` pickle in ``unsafe``
    (weights_only=False) always and in ``default`` where the default is not weights_only; any mode of a
    format whose loader unpickles by itself (``unpickles``: a DCP folder's ``.metadata``)."""
    return unpickles or (pickled and (mode == "unsafe" or (mode == "default" and not compat.default_weights_only())))
