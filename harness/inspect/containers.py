"""One detector per container, tried in order by :func:`harness.inspect.inspect_file`.

A detector takes ``(path, first 64 bytes, size, budget)`` and returns an :class:`Inspection` when
the file is its kind (intact or not), else None. A new container is one more function decorated
with :func:`detector`. Every read is bounded by the budget's :class:`~harness.inspect.limits.Limits`
(declared sizes are checked before anything is read or inflated); a file over a limit raises
:class:`~harness.inspect.limits.InspectionLimit`, which :func:`harness.inspect.inspect_file` turns
into one line.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from harness import containers
from harness.containers import _zip
from harness.containers import dcp as dcp_container
from harness.containers import legacy as legacy_container
from harness.containers import safetensors as safetensors_container
from harness.containers.legacy import LEGACY
from harness.containers.npz import NPZ
from harness.containers.pt2 import PT2
from harness.containers.torch_zip import TORCH_ZIP
from harness.containers.torchscript import TORCHSCRIPT
from harness.inspect import (
    CORRUPT,
    NOT_A_CHECKPOINT,
    TRUNCATED,
    Inspection,
    storage_summary,
)
from harness.inspect import structure as shapes
from harness.inspect.limits import Budget, InspectionLimit, read_entry
from harness.inspect.pickled import (
    PickleFailed,
    PickleOverLimits,
    PickleSkeleton,
    StorageRef,
    TensorRef,
    read_skeleton,
    walk,
)

Detector = Callable[[Path, bytes, int, Budget], Optional[Inspection]]
DETECTORS: list[Detector] = []

#: torch.export's schema ScalarType codes (torch/_export/serde/schema.py) → dtype names
EXPORT_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
                 8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16"}



def detector(function: Detector) -> Detector:
    """Register a container detector (tried in registration order)."""
    DETECTORS.append(function)
    return function


# -- safetensors ---------------------------------------------------------------------------

@detector
def safetensors(path: Path, head: bytes, size: int, budget: Budget) -> Optional[Inspection]:
    """8-byte little-endian header length, then a JSON header, then the tensor bytes."""
    if not safetensors_container.claims(head):
        return None
    (header_len,) = struct.unpack("<Q", head[:8])
    found = Inspection(str(path), size, "safetensors", "safetensors (JSON header, no pickle)")
    if 8 + header_len > size:
        return _broken(found, TRUNCATED, f"safetensors header says {header_len} bytes but the file ends first")
    if header_len > budget.limits.entry_bytes:
        raise InspectionLimit(f"safetensors header of {header_len:,} bytes, over the "
                              f"{budget.limits.entry_bytes:,}-byte limit")
    with open(path, "rb") as stream:
        stream.seek(8)
        raw = stream.read(header_len)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return _broken(found, CORRUPT, f"safetensors header is not JSON: {type(exc).__name__}: {str(exc)[:120]}")
    problem = safetensors_container.header_problem(header)
    if problem:
        return _broken(found, CORRUPT, f"safetensors header: {problem}")
    tensors = safetensors_container.tensors(header)
    end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    found.records = {"metadata": json.dumps(header.get(safetensors_container.METADATA) or {})[:200]}
    found.tensors = len(tensors)
    found.devices = ["cpu"] if tensors else []
    found.dtypes = _count(safetensors_container.DTYPES.get(v["dtype"], v["dtype"]) for v in tensors.values())
    found.bytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in tensors.values())
    found.structure = shapes.STATE_DICT
    found.prefixes = shapes.prefixes([list(tensors)])
    found.unsafe_globals = []
    if 8 + header_len + end > size:
        return _broken(found, TRUNCATED,
                       f"safetensors data ends at byte {8 + header_len + end} but the file has {size}")
    return found


# -- zip archives: torch.save, TorchScript, torch.export -----------------------------------

@detector
def zip_archive(path: Path, head: bytes, size: int, budget: Budget) -> Optional[Inspection]:
    """Any zip: a torch.save zip, a TorchScript archive or a torch.export program; or a broken one."""
    if not _zip.claims(head):
        return None
    found = Inspection(str(path), size, TORCH_ZIP.label)
    if not _zip.has_directory(path):
        return _broken(found, TRUNCATED, "zip archive without its end-of-central-directory record "
                                         "(the file was cut short, e.g. an interrupted save or copy)")
    try:
        with zipfile.ZipFile(path) as archive:
            return _zip_contents(found, archive, budget, path)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError) as exc:
        return _broken(found, CORRUPT, f"zip archive does not read: {exc}")


def _zip_contents(found: Inspection, archive: zipfile.ZipFile, budget: Budget,
                  path: Optional[Path] = None) -> Inspection:
    names = archive.namelist()
    inside = _zip.inside(names)
    for key in ("version", ".data/version", "byteorder", ".format_version", "archive_format", "archive_version"):
        if key in inside and archive.getinfo(inside[key]).file_size < 64:
            text = read_entry(archive, inside[key], 64).decode("utf-8", "replace").strip()
            found.records[key.lstrip(".").replace("data/", "")] = text
    kind = _zip.kind(inside)
    if kind == "npz" and path is not None:
        return _foreign(found, NPZ, path, budget)
    if kind in ZIP_READERS:
        return ZIP_READERS[kind](found, archive, inside, budget)
    found.container = NOT_A_CHECKPOINT
    found.detail = f"a zip archive without data.pkl ({len(names)} entries)"
    return found


def _torch_save_zip(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str],
                    budget: Budget) -> Inspection:
    found.detail = f"torch.save zip container (version {found.records.get('version', '?')})"
    try:
        skeleton = _pickle_into(found, _read_pickle(archive, inside[_zip.DATA_PKL], budget), budget)
    except PickleFailed as exc:
        return _broken(found, CORRUPT, f"data.pkl: {exc}")
    _check_zip_storages(found, archive, inside, list(skeleton.storages.values()))
    return found


def _export(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str], budget: Budget) -> Inspection:
    """The PT2 archive, or the older layout (a JSON program beside torch.save'd state)."""
    return (_export_archive if _zip.is_pt2_archive(inside) else _export_legacy)(found, archive, inside, budget)


def _read_pickle(archive: zipfile.ZipFile, name: str, budget: Budget) -> bytes:
    return read_entry(archive, name, budget.limits.pickle_bytes, budget.limits.compression_ratio)


def _read_small(archive: zipfile.ZipFile, name: str, budget: Budget) -> bytes:
    return read_entry(archive, name, budget.limits.entry_bytes, budget.limits.compression_ratio)


def _torchscript(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str], budget: Budget) -> Inspection:
    found.container = TORCHSCRIPT.label
    found.detail = "TorchScript archive (torch.jit.save): load it with torch.jit.load"
    found.structure = "TorchScript module"
    storages: dict[str, StorageRef] = {}
    tensors: list[TensorRef] = []
    for record in _zip.TORCHSCRIPT_PICKLES:
        if record in inside:
            try:
                skeleton = read_skeleton(_read_pickle(archive, inside[record], budget), budget.limits, budget)
            except PickleFailed as exc:
                found.globals = _merge(found.globals, exc.globals)
                return _broken(found, CORRUPT, f"{record}: {exc}")
            except PickleOverLimits as exc:
                found.globals = _merge(found.globals, exc.globals)
                raise
            found.globals = _merge(found.globals, skeleton.globals)
            storages.update({f"{record}:{k}": v for k, v in skeleton.storages.items()})
            tensors += _tensors(skeleton)
            if record == _zip.DATA_PKL:
                found.module_class = getattr(skeleton.root, "qualified", None)
    storage_summary(found, list(storages.values()), tensors)
    found.unsafe_globals = []  # torch.jit.load does not go through the weights_only unpickler
    return found


def _export_archive(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str], budget: Budget) -> Inspection:
    found.container = PT2.label
    found.detail = f"torch.export PT2 archive (format {found.records.get('archive_format', '?')}): torch.export.load"
    found.structure = "exported program"
    metas: list[dict[str, Any]] = []
    for name, full in inside.items():
        if name.startswith("data/") and name.endswith("_config.json"):
            try:
                config = json.loads(_read_small(archive, full, budget))
            except (ValueError, RecursionError) as exc:
                return _broken(found, CORRUPT, f"{name} is not JSON: {type(exc).__name__}: {str(exc)[:120]}")
            entries = config.get("config") if isinstance(config, dict) else None
            if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
                return _broken(found, CORRUPT, f"{name} is not an object with a 'config' object of entries")
            metas += [e.get("tensor_meta") if isinstance(e.get("tensor_meta"), dict) else {} for e in entries.values()]
    found.tensors = len(metas)
    found.dtypes = _count(EXPORT_DTYPES.get(m.get("dtype"), f"code {_short(m.get('dtype'))}")  # type: ignore[arg-type]
                          for m in metas)
    found.devices = sorted({_export_device(m.get("device")) for m in metas})
    found.bytes = sum(archive.getinfo(full).file_size for name, full in inside.items()
                      if name.startswith(("data/weights/", "data/constants/")) and not name.endswith(".json"))
    found.unsafe_globals = []
    return found


def _export_device(device: Any) -> str:
    if not isinstance(device, dict):
        return "cpu"
    kind, index = _short(device.get("type", "cpu")), device.get("index")
    return f"{kind}:{_short(index)}" if index is not None else kind


def _short(value: Any) -> str:
    """A JSON scalar from a file as text, bounded; anything else by its type."""
    return str(value)[:40] if isinstance(value, (str, int, float, bool)) else f"<{type(value).__name__}>"


def _export_legacy(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str], budget: Budget) -> Inspection:
    """torch.export.save before the PT2 archive (≤ 2.7): a JSON program plus torch.save'd state."""
    found.container = PT2.label
    found.detail = (f"torch.export program, pre-PT2 layout (schema {found.records.get('version', '?')}): "
                    "torch.export.load")
    found.structure = "exported program"
    found.unsafe_globals = []
    if "serialized_state_dict.pt" in inside:
        nested = _nested_torch_save(_read_pickle(archive, inside["serialized_state_dict.pt"], budget), budget)
        if nested is not None:
            for field in ("tensors", "devices", "dtypes", "bytes"):
                setattr(found, field, getattr(nested, field))
    return found


def _nested_torch_save(data: bytes, budget: Budget) -> Optional[Inspection]:
    """Inspect ``torch.save`` bytes kept inside another archive."""
    if _zip.claims(data):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                return _zip_contents(Inspection("<nested>", len(data), TORCH_ZIP.label), inner, budget)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, ValueError):
            return None
    return None


def _check_zip_storages(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str],
                        storages: list[StorageRef]) -> None:
    """Every storage the pickle points at has its ``data/<key>`` record; use its size as the byte count."""
    missing = [s.key for s in storages if _zip.storage_record(s.key) not in inside]
    if missing:
        _broken(found, CORRUPT, f"storages {', '.join(missing[:5])} named in data.pkl have no data/ record")
        return
    found.bytes = sum(archive.getinfo(inside[_zip.storage_record(s.key)]).file_size for s in storages)


# -- legacy torch.save stream --------------------------------------------------------------

def _plain_data(stream: BinaryIO, size: int, budget: Budget) -> Any:
    """One plain-data pickle of a legacy header (magic number, version, sys_info, storage keys).

    Read with the inert unpickler under the limits; a header that names any global is corrupt.
    """
    skeleton = read_skeleton(stream, budget.limits, budget, size=size)
    if skeleton.globals:
        raise PickleFailed(f"unexpected global {skeleton.globals[0]} in a legacy header", skeleton.globals)
    return skeleton.root


@detector
def legacy(path: Path, head: bytes, size: int, budget: Budget) -> Optional[Inspection]:
    """Magic number, protocol version and sys_info pickles, the object pickle, storage keys, storage data."""
    if not LEGACY.claims(head):
        return None
    with open(path, "rb") as stream:
        try:
            if _plain_data(stream, size, budget) != legacy_container.MAGIC:
                return None
        except (PickleFailed, PickleOverLimits):
            return None
        found = Inspection(str(path), size, LEGACY.label, "legacy torch.save stream (before torch 1.6, or "
                                                     "_use_new_zipfile_serialization=False)")
        try:
            found.records["version"] = _short(_plain_data(stream, size, budget))
            sys_info = _plain_data(stream, size, budget)
            if isinstance(sys_info, dict) and "little_endian" in sys_info:
                found.records["byteorder"] = "little" if sys_info["little_endian"] else "big"
            skeleton = _pickle_into(found, stream, budget, size)
            keys = _plain_data(stream, size, budget)
        except PickleFailed as exc:
            if _cut_short(exc):
                return _broken(found, TRUNCATED, f"legacy stream ends inside its pickles: re-save the file ({exc})")
            return _broken(found, CORRUPT, f"legacy stream does not parse: {exc}")
        if not isinstance(keys, list) or not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys):
            return _broken(found, CORRUPT, f"legacy stream's storage keys are a {type(keys).__name__}, "
                                           "not a list of keys")
        return _check_legacy_storages(found, stream, [str(k) for k in keys], size, skeleton.storages, budget)


def _check_legacy_storages(found: Inspection, stream: BinaryIO, keys: list[str], size: int,
                           by_key: dict[str, StorageRef], budget: Budget) -> Inspection:
    """Walk the storage records (8-byte element count, then the bytes); a short file is truncated."""
    position = stream.tell()
    for n, key in enumerate(keys):
        if not n & 0x3FF:
            budget.check()
        stream.seek(position)
        count = stream.read(8)
        if len(count) < 8:
            return _broken(found, TRUNCATED, f"legacy stream ends before storage {key[:80]!r}: re-save the file")
        (numel,) = struct.unpack("<q", count)
        if numel < 0:
            return _broken(found, CORRUPT, f"legacy storage {key[:80]!r} has a negative element count ({numel})")
        itemsize = by_key[key].itemsize if key in by_key else 1
        position += 8 + numel * itemsize
        if position > size:
            return _broken(found, TRUNCATED, f"legacy stream ends inside storage {key[:80]!r} "
                                             f"({position - size} bytes missing): re-save the file")
    return found


# -- a pickle without torch's framing ------------------------------------------------------

@detector
def raw_pickle(path: Path, head: bytes, size: int, budget: Budget) -> Optional[Inspection]:
    """A bare pickle (``pickle.dump``): not a checkpoint torch.load reads, but its globals are still sorted."""
    if not head.startswith(b"\x80"):
        return None
    found = Inspection(str(path), size, NOT_A_CHECKPOINT,
                       "a Python pickle not written by torch.save (no torch magic number)")
    with open(path, "rb") as stream:
        try:
            skeleton = read_skeleton(stream, budget.limits, budget, size=size)
        except PickleFailed as exc:
            found.globals = exc.globals
            return found
    found.globals = skeleton.globals
    return found


# -- shared ---------------------------------------------------------------------------------

def _pickle_into(found: Inspection, data: bytes | BinaryIO, budget: Budget,
                 size: Optional[int] = None) -> PickleSkeleton:
    """Fill structure, tensors, storages and globals from the object pickle (inert read).

    The globals named before a failure are kept on ``found`` (a broken or over-limit pickle still
    shows what it imports); the failure is re-raised.
    """
    try:
        skeleton = read_skeleton(data, budget.limits, budget, size=size)
    except (PickleFailed, PickleOverLimits) as exc:
        found.globals = _merge(found.globals, exc.globals)
        if isinstance(exc, PickleFailed):
            raise PickleFailed(f"object pickle does not read: {exc}", exc.globals) from None
        raise
    found.globals = _merge(found.globals, skeleton.globals)
    storage_summary(found, list(skeleton.storages.values()), _tensors(skeleton))
    found.structure = shapes.classify(skeleton.root)
    found.prefixes = shapes.prefixes(shapes.state_dicts(skeleton.root, budget.limits.expanded_nodes))
    found.module_class = shapes.whole_module_class(skeleton.root)
    return skeleton


def _merge(old: list[str], new: list[str]) -> list[str]:
    return old + [n for n in new if n not in old]


# -- containers recognised by harness.containers alone (ONNX, npz, tar; sharded safetensors and DCP folders) --

@detector
def recognised_elsewhere(path: Path, head: bytes, size: int, budget: Budget) -> Optional[Inspection]:
    """A container :mod:`harness.containers` recognises that no pickle-reading detector above covers."""
    found = containers.identify(path)
    if found is None or found.name not in FOREIGN:
        return None
    return _foreign(Inspection(str(path), size, found.label), found, path, budget)


def _foreign(inspection: Inspection, container: containers.Container, path: Path, budget: Budget) -> Inspection:
    """Fill an inspection from the container module: its problems, tensor bytes and (DCP) metadata globals."""
    inspection.container, inspection.detail = container.label, container.description
    problems = container.problems(path)
    if problems:
        return _broken(inspection, CORRUPT, f"{container.description}: " + "; ".join(problems[:3]))
    inspection.bytes = container.tensor_bytes(path)
    inspection.structure, pickle_free = FOREIGN[container.name]
    inspection.unsafe_globals = [] if pickle_free else None
    if container.name == "dcp":
        inspection.globals = _dcp_metadata_globals(path, budget)
    return inspection


def _dcp_metadata_globals(folder: Path, budget: Budget) -> list[str]:
    """The globals a DCP folder's ``.metadata`` pickle names (DCP unpickles it in full: dangerous ones matter)."""
    metadata = folder / dcp_container.METADATA
    if metadata.stat().st_size > budget.limits.pickle_bytes:
        raise InspectionLimit(f".metadata of {metadata.stat().st_size:,} bytes, over the "
                              f"{budget.limits.pickle_bytes:,}-byte limit for pickles the inspection reads")
    try:
        return read_skeleton(metadata.read_bytes(), budget.limits, budget).globals
    except PickleFailed as exc:
        return exc.globals


#: containers inspected through harness.containers: their structure, and whether they hold no pickle
#: (a tar's members are not looked into: they may be pickles)
FOREIGN = {"onnx": ("ONNX graph", True), "sharded_safetensors": (shapes.STATE_DICT, True),
           "npz": ("numpy arrays (read with allow_pickle=False)", True), "tar": ("tar archive", False),
           "dcp": ("torch.distributed.checkpoint folder (its .metadata is a pickle: load only trusted folders)",
                   False)}
ZIP_READERS = {"torch_zip": _torch_save_zip, "torchscript": _torchscript, "pt2": _export}


def _tensors(skeleton: PickleSkeleton) -> list[TensorRef]:
    return [obj for obj in walk(skeleton.root) if isinstance(obj, TensorRef)]


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _cut_short(error: BaseException) -> bool:
    """True when a pickle error means the stream ended early (not that its bytes are wrong)."""
    exc: Optional[BaseException] = error
    while exc is not None:
        if isinstance(exc, EOFError) or any(m in str(exc) for m in ("truncated", "Ran out of input", "EOFError")):
            return True
        exc = exc.__cause__
    return False


def _broken(found: Inspection, container: str, detail: str) -> Inspection:
    found.container, found.detail = container, detail
    return found
