"""Inspect a checkpoint file without running any of it: ``ckpt-harness check`` starts here.

:func:`inspect_file` identifies the container (torch zip, legacy stream, TorchScript archive,
torch.export ``.pt2``, safetensors, not a checkpoint, truncated or corrupt) from its bytes, then
reads what is inside with :mod:`harness.inspect.pickled`, whose unpickler resolves every global
to an inert stand-in: no class is imported and no function from the file is called. The
detectors live in :mod:`harness.inspect.containers`, one per container, tried in order.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any, Optional

NOT_A_CHECKPOINT = "not a checkpoint"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
#: containers ``torch.load`` reads (the weights_only question applies to them)
PICKLE_CONTAINERS = ("zip", "legacy")
#: containers whose file cannot be loaded at all
BROKEN = (NOT_A_CHECKPOINT, TRUNCATED, CORRUPT)


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

    @property
    def loadable(self) -> bool:
        """False for files no loader can read (not a checkpoint, truncated, corrupt)."""
        return self.container not in BROKEN

    @property
    def cuda_devices(self) -> list[str]:
        return [d for d in self.devices if d.startswith("cuda")]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def inspect_file(path: Path) -> Inspection:
    """Inspect one file; never raises for what is inside it (a broken file is a finding)."""
    from harness.inspect.containers import DETECTORS

    path = Path(path)
    if path.is_dir():  # a folder layout (sharded safetensors, DCP): only harness.containers knows them
        from harness import containers
        from harness.inspect.containers import recognised_elsewhere

        found = recognised_elsewhere(path, b"", containers.artifact_bytes(path))
        return found or Inspection(str(path), 0, NOT_A_CHECKPOINT, "a folder that is no known checkpoint layout")
    size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(64)
    for detector in DETECTORS:
        found = detector(path, head, size)
        if found is not None:
            return found
    return Inspection(str(path), size, NOT_A_CHECKPOINT, describe_head(head))


def describe_head(head: bytes) -> str:
    """A guess at what a file that is not a checkpoint is, from its first bytes."""
    if not head:
        return "the file is empty"
    if head[:1] == b"\x80":
        return "a Python pickle not written by torch.save (no torch magic number)"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"unknown binary data starting with {head[:8].hex()}"


def storage_summary(inspection: Inspection, storages: Any, tensors: list[Any]) -> None:
    """Fill devices, dtypes (per tensor), tensor count and bytes from what a pickle points at."""
    inspection.tensors = len(tensors)
    inspection.devices = sorted({s.location for s in storages})
    inspection.dtypes = dict(collections.Counter(t.storage.dtype if t.storage else "?" for t in tensors))
    inspection.bytes = sum(s.nbytes for s in storages)
