"""Read a torch pickle without running it: every global resolves to an inert stand-in.

:class:`InertUnpickler` walks the pickle with the standard virtual machine, but ``find_class``
never imports anything: it hands back a stand-in class named after the global (or, for the few
functions that rebuild tensors, a local function that records what the tensor would be). So
no code from the file runs, and what comes back is a skeleton of the object: dicts, lists and
tuples as they are, :class:`TensorRef` where a tensor would be, :class:`Opaque` instances where
any other object would be. The globals the file asked for are collected on the way.

Persistent ids (how torch pickles point at storages) become :class:`StorageRef`: the storage's
key, dtype, device tag (``cpu``, ``cuda:1``) and element count.
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import io
import pickle
from typing import Any, BinaryIO, Iterator, Optional

#: legacy typed-storage class names (``torch.FloatStorage``) → (dtype, bytes per element)
STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("float64", 8), "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1), "ComplexFloatStorage": ("complex64", 8), "ComplexDoubleStorage": ("complex128", 16),
    "QInt8Storage": ("qint8", 1), "QUInt8Storage": ("quint8", 1), "QInt32Storage": ("qint32", 4),
    "QUInt4x2Storage": ("quint4x2", 1), "QUInt2x4Storage": ("quint2x4", 1),
    "UntypedStorage": ("uint8", 1),
}


@dataclasses.dataclass(frozen=True)
class StorageRef:
    """A storage a tensor points at, as the persistent id describes it."""

    key: str
    dtype: str
    location: str
    numel: int
    itemsize: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclasses.dataclass
class TensorRef:
    """Where a tensor would be: its storage and its shape (no data is read)."""

    storage: Optional[StorageRef]
    shape: tuple[int, ...] = ()
    parameter: bool = False


class Opaque:
    """Stand-in for an object of a class the file names; keeps what unpickling would pass to it."""

    _global = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.elements: list[Any] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> "Opaque":
        instance = super().__new__(cls)
        instance.args, instance.state, instance.items, instance.elements = args, None, {}, []
        return instance

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    @property
    def qualified(self) -> str:
        return type(self)._global


def _rebuild_tensor(storage: Any = None, offset: Any = 0, size: Any = (), *rest: Any) -> TensorRef:
    return TensorRef(storage if isinstance(storage, StorageRef) else None, tuple(size) if isinstance(size, tuple) else ())


def _rebuild_parameter(data: Any = None, *rest: Any) -> Any:
    if isinstance(data, TensorRef):
        data.parameter = True
    return data


def _reconstructor(cls: Any = None, base: Any = None, state: Any = None) -> Any:
    """``copyreg._reconstructor(cls, object, None)``: an instance of the stand-in class."""
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Opaque) else Opaque(cls, base, state)


def _rebuild_from_type(func: Any = None, new_type: Any = None, args: Any = (), state: Any = None) -> Any:
    """``torch._tensor._rebuild_from_type_v2(func, type, args, state)``: the tensor ``func(*args)`` built."""
    return func(*args) if callable(func) else Opaque(func, new_type, args, state)


#: globals whose meaning the inspector needs; each maps to a local, side-effect-free function
SPECIAL: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "copyreg._reconstructor": _reconstructor,
}


class InertUnpickler(pickle.Unpickler):
    """Unpickles into stand-ins; records every global and storage it meets. Runs no code from the file."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream, encoding="latin1")
        self.globals: list[str] = []
        self.storages: dict[str, StorageRef] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol 2 writes ``__builtin__.set``), renamed the way pickle itself does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified not in self.globals:
            self.globals.append(qualified)
        if qualified in SPECIAL:
            return SPECIAL[qualified]
        if qualified not in self._classes:
            self._classes[qualified] = type(name, (Opaque,), {"_global": qualified, "__module__": "inert"})
        return self._classes[qualified]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, location, numel = pid[1], str(pid[2]), str(pid[3]), pid[4]
            type_name = getattr(storage_type, "_global", str(storage_type)).rsplit(".", 1)[-1]
            dtype, itemsize = STORAGE_DTYPES.get(type_name, (f"unknown ({type_name})", 0))
            ref = StorageRef(key, dtype, location, int(numel) if isinstance(numel, int) else 0, itemsize)
            self.storages.setdefault(key, ref)
            return ref
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module":
            return pid[1]  # legacy whole-module pickles name each module class by persistent id
        return Opaque(pid)


@dataclasses.dataclass
class PickleSkeleton:
    """What an inert read of one pickle found."""

    root: Any
    globals: list[str]
    storages: dict[str, StorageRef]


def read_skeleton(data: bytes | BinaryIO) -> PickleSkeleton:
    """Inert read of one pickle (bytes or a stream positioned at it). Raises on a broken stream."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    unpickler = InertUnpickler(stream)
    root = unpickler.load()
    return PickleSkeleton(root, unpickler.globals, unpickler.storages)


def children(obj: Any) -> Iterator[Any]:
    """The objects directly inside ``obj`` in a skeleton."""
    if isinstance(obj, dict):
        yield from obj.values()
        yield from getattr(obj, "__dict__", {}).values()  # OrderedDict._metadata
    elif isinstance(obj, (list, tuple, set, frozenset)):
        yield from obj
    elif isinstance(obj, Opaque):
        yield from obj.args
        yield obj.state
        yield from obj.items.values()
        yield from obj.elements


def walk(root: Any) -> Iterator[Any]:
    """Every object reachable from ``root``, each once (skeletons can share objects)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(children(obj))


def module_state(obj: Any) -> Optional[dict[str, Any]]:
    """The ``__dict__`` of a pickled ``nn.Module`` stand-in (it has ``_parameters``/``_modules``), else None."""
    if isinstance(obj, Opaque) and isinstance(obj.state, dict) and (
            "_parameters" in obj.state or "_modules" in obj.state):
        return obj.state
    return None
