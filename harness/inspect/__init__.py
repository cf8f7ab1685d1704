"""Inspect a checkpoint file without running any of it: ``ckpt-harness check`` starts here.

:func:`inspect_file` identifies the container (torch zip, legacy stream, TorchScript archive,
torch.export ``.pt2``, safetensors, not a checkpoint, truncated or corrupt) from its bytes, then
reads what is inside with :mod:`harness.inspect.pickled`, whose unpickler resolves every global
to an inert stand-in: no class is imported and no function from the file is called. The
detectors live in :mod:`harness.inspect.containers`, one per container, tried in order.

Every global a pickle names is sorted by :mod:`harness.inspect.dangerous` into dangerous,
harmless and suspicious. Reading is bounded by :mod:`harness.inspect.limits`; a file over a limit
is the container :data:`OVER_LIMITS` with one line saying which. :mod:`harness.inspect.isolated`
runs an inspection in a forked child under a time and memory ceiling besides.
"""

from __future__ import annotations

import collections
import dataclasses
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.containers.legacy import LEGACY
from harness.containers.torch_zip import TORCH_ZIP

if TYPE_CHECKING:
    from harness.inspect.limits import Limits

NOT_A_CHECKPOINT = "not a checkpoint"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
#: the file asks for more than the inspection limits allow (a bomb, or a file too big to inspect)
OVER_LIMITS = "over limits"
#: containers ``torch.load`` reads (the weights_only question applies to them), as inspection names them
PICKLE_CONTAINERS = (TORCH_ZIP.label, LEGACY.label)
#: containers whose file cannot be loaded at all (or, over the limits, is not handed to a loader)
BROKEN = (NOT_A_CHECKPOINT, TRUNCATED, CORRUPT, OVER_LIMITS)


@dataclasses.dataclass
class Inspection:
    """What a file holds, as far as its bytes tell without running it."""

    path: str
    size: int
    #: zip | legacy | torchscript | export_pt2 | safetensors | not a checkpoint | truncated | corrupt
    container: str
    #: one line saying what the container is, or what is wrong with it
    detail: str = ""
    #: small records of the container: version, byteorder, format_version, archive_format, ...
    records: dict[str, str] = dataclasses.field(default_factory=dict)
    #: storage device tags (``cpu``, ``cuda:1``), sorted
    devices: list[str] = dataclasses.field(default_factory=list)
    tensors: int = 0
    #: dtype → number of storages of that dtype
    dtypes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: bytes of tensor data
    bytes: int = 0
    #: state_dict | training checkpoint | whole module | multi-model dict | TorchScript module | ...
    structure: str = ""
    #: wrapper prefixes carried by every key of a state_dict: {"module.": 12}
    prefixes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: every global the pickle names (``module.name``)
    globals: list[str] = dataclasses.field(default_factory=list)
    #: the globals a weights_only load would refuse here; None where this torch cannot tell
    unsafe_globals: Optional[list[str]] = None
    #: the class of a pickled whole module
    module_class: Optional[str] = None
    #: globals on the blocklist (:mod:`harness.inspect.dangerous`): loading the file runs code
    dangerous_globals: list[str] = dataclasses.field(default_factory=list)
    #: globals on no list: unknown classes that run their own code when unpickled
    suspicious_globals: list[str] = dataclasses.field(default_factory=list)

    @property
    def loadable(self) -> bool:
        """False for files no loader can read (not a checkpoint, truncated, corrupt, over limits)."""
        return self.container not in BROKEN

    @property
    def dangerous(self) -> bool:
        """True when the file names a dangerous global (whatever else is wrong with it)."""
        return bool(self.dangerous_globals)

    @property
    def cuda_devices(self) -> list[str]:
        return [d for d in self.devices if d.startswith("cuda")]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: ``inspect_file(allowlist=READ)``: read torch's weights_only allowlist from the torch installed here
READ: Any = object()


def inspect_file(path: Path, limits: Optional[Limits] = None, allowlist: Any = READ) -> Inspection:
    """Inspect one file; never raises for what is inside it (a broken or hostile file is a finding).

    ``allowlist``: torch's weights_only allowlist as a set of names, None where unknown, or
    :data:`READ` to import torch and read it.
    """
    from harness.inspect.containers import DETECTORS
    from harness.inspect.limits import DEFAULT, Budget, InspectionLimit

    path = Path(path)
    budget = Budget(limits or DEFAULT)
    if path.is_dir():  # a folder layout (sharded safetensors, DCP): only harness.containers knows them
        from harness import containers
        from harness.inspect.containers import recognised_elsewhere

        try:
            folder = recognised_elsewhere(path, b"", containers.artifact_bytes(path), budget)
        except InspectionLimit as exc:
            folder = Inspection(str(path), 0, OVER_LIMITS, f"not inspected further: {exc}",
                                globals=list(getattr(exc, "globals", [])))
        folder = folder or Inspection(str(path), 0, NOT_A_CHECKPOINT, "a folder that is no known checkpoint layout")
        sort_globals(folder, _allowlist() if allowlist is READ else allowlist)
        return folder
    status = path.stat()
    size = status.st_size
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read, a device never end
        return Inspection(str(path), size, NOT_A_CHECKPOINT, "not a regular file (a FIFO, device or socket)")
    with open(path, "rb") as stream:
        head = stream.read(64)
    found: Optional[Inspection] = None
    try:
        for detector in DETECTORS:
            found = detector(path, head, size, budget)
            if found is not None:
                break
        else:
            found = Inspection(str(path), size, NOT_A_CHECKPOINT, describe_head(head))
    except InspectionLimit as exc:
        found = Inspection(str(path), size, OVER_LIMITS, f"not inspected further: {exc}",
                           globals=list(getattr(exc, "globals", [])))
    except RecursionError:
        found = Inspection(str(path), size, OVER_LIMITS, "not inspected further: it nests deeper than Python follows")
    except MemoryError:
        found = Inspection(str(path), size, OVER_LIMITS, "not inspected further: the inspection ran out of its "
                                                         "memory allowance")
    except Exception as exc:  # a detector's blind spot on a hostile file: a finding, never a traceback
        found = Inspection(str(path), size, CORRUPT, f"does not read: {type(exc).__name__}: {str(exc)[:200]}")
    sort_globals(found, _allowlist() if allowlist is READ else allowlist)
    return found


def sort_globals(found: Inspection, allowlist: Optional[frozenset[str]]) -> None:
    """Fill ``dangerous_globals``, ``suspicious_globals`` and ``unsafe_globals`` from ``globals``.

    ``allowlist``: torch's weights_only allowlist; None where this torch cannot tell (then
    ``unsafe_globals`` is None for pickles).
    """
    from harness.inspect import dangerous

    names = found.globals
    if found.container == "torchscript":  # resolved by TorchScript's own unpickler, not Python's
        names = [n for n in names if not n.startswith(dangerous.TORCHSCRIPT_OWN)]
    sorted_ = dangerous.sort_globals(names, allowlist or ())
    found.dangerous_globals = sorted_[dangerous.DANGEROUS]
    found.suspicious_globals = sorted_[dangerous.SUSPICIOUS]
    if found.container in PICKLE_CONTAINERS or (found.container in BROKEN and found.globals):
        found.unsafe_globals = None if allowlist is None else sorted(
            n for n in set(found.globals) if n not in allowlist)


def _allowlist() -> Optional[frozenset[str]]:
    from harness import compat

    return compat.weights_only_allowlist()


def describe_head(head: bytes) -> str:
    """A guess at what a file that is not a checkpoint is, from its first bytes."""
    if not head:
        return "the file is empty"
    if head[:1] == b"\x80":
        return "a Python pickle not written by torch.save (no torch magic number)"
    if not head.strip(b"\x00"):
        return f"binary data: the first {len(head)} bytes are all zero (a preallocated, sparse or wiped file)"
    text = next((t for t in (_utf8(head[:len(head) - cut]) for cut in range(4)) if t is not None), None)
    if text is not None and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return "a text file"
    return f"unknown binary data starting with {head[:8].hex()}"


def _utf8(data: bytes) -> Optional[str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def storage_summary(inspection: Inspection, storages: Any, tensors: list[Any]) -> None:
    """Fill devices, dtypes (per tensor), tensor count and bytes from what a pickle points at."""
    inspection.tensors = len(tensors)
    inspection.devices = sorted({s.location for s in storages})
    inspection.dtypes = dict(collections.Counter(t.storage.dtype if t.storage else "?" for t in tensors))
    inspection.bytes = sum(s.nbytes for s in storages)
