"""One detector per container, tried in order by :func:`harness.inspect.inspect_file`.

A detector takes ``(path, first 64 bytes, size)`` and returns an :class:`Inspection` when the
file is its kind (intact or not), else None. A new container is one more function decorated
with :func:`detector`.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from harness.inspect import (CORRUPT, TRUNCATED, Inspection, storage_summary)
from harness.inspect import structure as shapes
from harness.inspect.pickled import PickleSkeleton, StorageRef, TensorRef, read_skeleton, walk

Detector = Callable[[Path, bytes, int], Optional[Inspection]]
DETECTORS: list[Detector] = []

#: the number ``torch.save`` writes first in a legacy (pre-zip) stream
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: torch.export's schema ScalarType codes (torch/_export/serde/schema.py) → dtype names
EXPORT_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
                 8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16"}

#: safetensors dtype names → torch dtype names
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64", "U16": "uint16",
                      "U32": "uint32", "U64": "uint64"}


def detector(function: Detector) -> Detector:
    """Register a container detector (tried in registration order)."""
    DETECTORS.append(function)
    return function


# -- safetensors ---------------------------------------------------------------------------

@detector
def safetensors(path: Path, head: bytes, size: int) -> Optional[Inspection]:
    """8-byte little-endian header length, then a JSON header, then the tensor bytes."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (header_len,) = struct.unpack("<Q", head[:8])
    found = Inspection(str(path), size, "safetensors", "safetensors (JSON header, no pickle)")
    if 8 + header_len > size:
        return _broken(found, TRUNCATED, f"safetensors header says {header_len} bytes but the file ends first")
    with open(path, "rb") as stream:
        stream.seek(8)
        try:
            header = json.loads(stream.read(header_len))
        except ValueError as exc:
            return _broken(found, CORRUPT, f"safetensors header is not JSON: {exc}")
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    end = max((v.get("data_offsets", [0, 0])[1] for v in tensors.values()), default=0)
    found.records = {"metadata": json.dumps(header.get("__metadata__") or {})[:200]}
    found.tensors = len(tensors)
    found.devices = ["cpu"] if tensors else []
    found.dtypes = _count(SAFETENSORS_DTYPES.get(str(v.get("dtype")), str(v.get("dtype"))) for v in tensors.values())
    found.bytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in tensors.values())
    found.structure = shapes.STATE_DICT
    found.prefixes = shapes.prefixes([list(tensors)])
    found.unsafe_globals = []
    if 8 + header_len + end > size:
        return _broken(found, TRUNCATED, f"safetensors data ends at byte {8 + header_len + end} but the file has {size}")
    return found


# -- zip archives: torch.save, TorchScript, torch.export -----------------------------------

@detector
def zip_archive(path: Path, head: bytes, size: int) -> Optional[Inspection]:
    """Any zip: a torch.save zip, a TorchScript archive or a torch.export program; or a broken one."""
    if not head.startswith(b"PK\x03\x04"):
        return None
    found = Inspection(str(path), size, "zip")
    if not zipfile.is_zipfile(path):
        return _broken(found, TRUNCATED, "zip archive without its end-of-central-directory record "
                                         "(the file was cut short, e.g. an interrupted save or copy)")
    try:
        with zipfile.ZipFile(path) as archive:
            return _zip_contents(found, archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return _broken(found, CORRUPT, f"zip archive does not read: {exc}")


def _zip_contents(found: Inspection, archive: zipfile.ZipFile) -> Inspection:
    names = archive.namelist()
    root = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    inside = {n[len(root):] if n.startswith(root) else n: n for n in names}
    for key in ("version", ".data/version", "byteorder", ".format_version", "archive_format", "archive_version"):
        if key in inside and archive.getinfo(inside[key]).file_size < 64:
            found.records[key.lstrip(".").replace("data/", "")] = archive.read(inside[key]).decode("utf-8", "replace").strip()
    if "constants.pkl" in inside and any(n.startswith("code/") for n in inside):
        return _torchscript(found, archive, inside)
    if "archive_format" in inside or any(n.startswith("models/") for n in inside):
        return _export_archive(found, archive, inside)
    if "serialized_exported_program.json" in inside:
        return _export_legacy(found, archive, inside)
    if "data.pkl" in inside:
        found.detail = f"torch.save zip container (version {found.records.get('version', '?')})"
        try:
            skeleton = _pickle_into(found, archive.read(inside["data.pkl"]))
        except pickle.UnpicklingError as exc:
            return _broken(found, CORRUPT, f"data.pkl: {exc}")
        _check_zip_storages(found, archive, inside, list(skeleton.storages.values()))
        return found
    found.container = "not a checkpoint"
    found.detail = f"a zip archive without data.pkl ({len(names)} entries)"
    return found


def _torchscript(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str]) -> Inspection:
    found.container = "torchscript"
    found.detail = "TorchScript archive (torch.jit.save): load it with torch.jit.load"
    found.structure = "TorchScript module"
    storages: dict[str, StorageRef] = {}
    tensors: list[TensorRef] = []
    for record in ("data.pkl", "constants.pkl"):
        if record in inside:
            skeleton = read_skeleton(archive.read(inside[record]))
            storages.update({f"{record}:{k}": v for k, v in skeleton.storages.items()})
            tensors += _tensors(skeleton)
            if record == "data.pkl":
                found.module_class = getattr(skeleton.root, "qualified", None)
    storage_summary(found, list(storages.values()), tensors)
    found.unsafe_globals = []  # torch.jit.load does not go through the weights_only unpickler
    return found


def _export_archive(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str]) -> Inspection:
    found.container = "export_pt2"
    found.detail = f"torch.export PT2 archive (format {found.records.get('archive_format', '?')}): torch.export.load"
    found.structure = "exported program"
    metas = []
    for name, full in inside.items():
        if name.startswith("data/") and name.endswith("_config.json"):
            metas += [entry.get("tensor_meta", {}) for entry in json.loads(archive.read(full)).get("config", {}).values()]
    found.tensors = len(metas)
    found.dtypes = _count(EXPORT_DTYPES.get(m.get("dtype"), f"code {m.get('dtype')}") for m in metas)
    found.devices = sorted({_export_device(m.get("device") or {}) for m in metas})
    found.bytes = sum(archive.getinfo(full).file_size for name, full in inside.items()
                      if name.startswith(("data/weights/", "data/constants/")) and not name.endswith(".json"))
    found.unsafe_globals = []
    return found


def _export_device(device: dict[str, Any]) -> str:
    kind, index = device.get("type", "cpu"), device.get("index")
    return f"{kind}:{index}" if index is not None else str(kind)


def _export_legacy(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str]) -> Inspection:
    """torch.export.save before the PT2 archive (≤ 2.7): a JSON program plus torch.save'd state."""
    found.container = "export_pt2"
    found.detail = f"torch.export program, pre-PT2 layout (schema {found.records.get('version', '?')}): torch.export.load"
    found.structure = "exported program"
    found.unsafe_globals = []
    if "serialized_state_dict.pt" in inside:
        nested = _nested_torch_save(archive.read(inside["serialized_state_dict.pt"]))
        if nested is not None:
            for field in ("tensors", "devices", "dtypes", "bytes"):
                setattr(found, field, getattr(nested, field))
    return found


def _nested_torch_save(data: bytes) -> Optional[Inspection]:
    """Inspect ``torch.save`` bytes kept inside another archive."""
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            return _zip_contents(Inspection("<nested>", len(data), "zip"), inner)
    return None


def _check_zip_storages(found: Inspection, archive: zipfile.ZipFile, inside: dict[str, str],
                        storages: list[StorageRef]) -> None:
    """Every storage the pickle points at has its ``data/<key>`` record; use its size as the byte count."""
    missing = [s.key for s in storages if f"data/{s.key}" not in inside]
    if missing:
        _broken(found, CORRUPT, f"storages {', '.join(missing[:5])} named in data.pkl have no data/ record")
        return
    found.bytes = sum(archive.getinfo(inside[f"data/{s.key}"]).file_size for s in storages)


# -- legacy torch.save stream --------------------------------------------------------------

class _PlainData(pickle.Unpickler):
    """Unpickles the plain-data headers of a legacy stream; refuses every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a legacy header")


@detector
def legacy(path: Path, head: bytes, size: int) -> Optional[Inspection]:
    """Magic number, protocol version and sys_info pickles, the object pickle, storage keys, storage data."""
    if not head.startswith(b"\x80\x02\x8a\x0a"):
        return None
    with open(path, "rb") as stream:
        try:
            if _PlainData(stream).load() != LEGACY_MAGIC:
                return None
        except Exception:
            return None
        found = Inspection(str(path), size, "legacy", "legacy torch.save stream (before torch 1.6, or "
                                                     "_use_new_zipfile_serialization=False)")
        try:
            found.records["version"] = str(_PlainData(stream).load())
            sys_info = _PlainData(stream).load()
            if isinstance(sys_info, dict) and "little_endian" in sys_info:
                found.records["byteorder"] = "little" if sys_info["little_endian"] else "big"
            skeleton = _pickle_into(found, stream)
            keys = _PlainData(stream).load()
        except (EOFError, pickle.UnpicklingError, ValueError) as exc:
            if _cut_short(exc):
                return _broken(found, TRUNCATED, f"legacy stream ends inside its pickles: re-save the file ({exc})")
            return _broken(found, CORRUPT, f"legacy stream does not parse: {exc}")
        return _check_legacy_storages(found, stream, [str(k) for k in keys], size, skeleton.storages)


def _check_legacy_storages(found: Inspection, stream: BinaryIO, keys: list[str], size: int,
                           by_key: dict[str, StorageRef]) -> Inspection:
    """Walk the storage records (8-byte element count, then the bytes); a short file is truncated."""
    position = stream.tell()
    for key in keys:
        stream.seek(position)
        count = stream.read(8)
        if len(count) < 8:
            return _broken(found, TRUNCATED, f"legacy stream ends before storage {key!r}: re-save the file")
        (numel,) = struct.unpack("<q", count)
        itemsize = by_key[key].itemsize if key in by_key else 1
        position += 8 + numel * itemsize
        if position > size:
            return _broken(found, TRUNCATED, f"legacy stream ends inside storage {key!r} "
                                             f"({position - size} bytes missing): re-save the file")
    return found


# -- shared ---------------------------------------------------------------------------------

def _pickle_into(found: Inspection, data: bytes | BinaryIO) -> PickleSkeleton:
    """Fill structure, tensors, storages and globals from the object pickle (inert read)."""
    try:
        skeleton = read_skeleton(data)
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise pickle.UnpicklingError(f"object pickle does not read: {type(exc).__name__}: {exc}") from exc
    storage_summary(found, list(skeleton.storages.values()), _tensors(skeleton))
    found.globals = list(skeleton.globals)
    found.structure = shapes.classify(skeleton.root)
    found.prefixes = shapes.prefixes(shapes.state_dicts(skeleton.root))
    found.module_class = shapes.whole_module_class(skeleton.root)
    found.unsafe_globals = _unsafe(skeleton.globals)
    return skeleton


# -- containers recognised by harness.containers alone (ONNX; sharded safetensors and DCP folders) ------

@detector
def recognised_elsewhere(path: Path, head: bytes, size: int) -> Optional[Inspection]:
    """A container :mod:`harness.containers` recognises that no pickle-reading detector above covers."""
    from harness import containers

    found = containers.identify(path)
    if found is None or found.name not in FOREIGN:
        return None
    inspection = Inspection(str(path), size, found.name, found.description)
    problems = found.problems(path)
    if problems:
        return _broken(inspection, CORRUPT, f"{found.description}: " + "; ".join(problems[:3]))
    inspection.bytes = found.tensor_bytes(path)
    inspection.structure = FOREIGN[found.name]
    inspection.unsafe_globals = [] if found.name != "dcp" else None
    return inspection


#: containers inspected through harness.containers, and what their structure is
FOREIGN = {"onnx": "ONNX graph", "sharded_safetensors": shapes.STATE_DICT,
           "dcp": "torch.distributed.checkpoint folder (its .metadata is a pickle: load only trusted folders)"}


def _unsafe(names: list[str]) -> Optional[list[str]]:
    from harness import compat

    allowed = compat.weights_only_allowlist()
    return None if allowed is None else sorted(n for n in names if n not in allowed)


def _tensors(skeleton: PickleSkeleton) -> list[TensorRef]:
    return [obj for obj in walk(skeleton.root) if isinstance(obj, TensorRef)]


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _cut_short(exc: BaseException) -> bool:
    """True when a pickle error means the stream ended early (not that its bytes are wrong)."""
    while exc is not None:
        if isinstance(exc, EOFError) or "truncated" in str(exc) or "Ran out of input" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _broken(found: Inspection, container: str, detail: str) -> Inspection:
    found.container, found.detail = container, detail
    return found
