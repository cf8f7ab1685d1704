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
import gc
import io
import pickle
import struct
from typing import Any, BinaryIO, ClassVar, Iterator, Optional

from harness.inspect import dangerous
from harness.inspect.limits import DEFAULT, MB, Budget, InspectionLimit, Limits

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

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
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
    shape = tuple(size) if isinstance(size, tuple) else ()
    return TensorRef(storage if isinstance(storage, StorageRef) else None, shape)


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
_SPECIAL_FUNCTIONS = frozenset(f for f in SPECIAL.values() if f is not collections.OrderedDict)
#: values that are leaves of a skeleton (hashing them costs nothing)
_SCALARS = frozenset({str, bytes, int, float, bool, type(None), complex})
#: a declared length above this is no cut-short file's: the pickle is hostile or corrupt (256 TiB)
IMPLAUSIBLE_BYTES = 1 << 48
_NAMES = {pickle.BINBYTES8[0]: "BINBYTES8", pickle.BINUNICODE8[0]: "BINUNICODE8", pickle.BINBYTES[0]: "BINBYTES",
          pickle.BINUNICODE[0]: "BINUNICODE", pickle.BINSTRING[0]: "BINSTRING"}


class InertUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Unpickles into stand-ins under :class:`~harness.inspect.limits.Limits`. Runs no code from the file.

    The pure-Python virtual machine of :mod:`pickle`, so that each opcode that could cost more than
    its bytes is checked first: declared lengths against the bytes left in the buffer, integers
    by size, dict keys and set members by size (hashing a deep or shared tuple recurses without
    bound in C), ``BUILD`` only on stand-ins, ``STACK_GLOBAL`` on computed names recorded as
    :data:`~harness.inspect.dangerous.COMPUTED` instead of failing, and every global recorded the
    moment it is named, so a pickle that breaks later still shows what it imports.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined,misc]

    def __init__(self, stream: io.BytesIO, limits: Limits = DEFAULT, budget: Optional[Budget] = None) -> None:
        super().__init__(stream, encoding="latin1")
        self.limits = limits
        self.budget = budget or Budget(limits)
        self.source = stream
        self.length = len(stream.getbuffer())
        self.globals: list[str] = []
        self.storages: dict[str, StorageRef] = {}
        self._classes: dict[str, type] = {}

    # -- the virtual machine loop, with an opcode budget ---------------------------------------

    def load(self) -> Any:
        # the whole pickle is in memory: frames (protocol 4) are only checked, never copied out, and the
        # virtual machine reads straight from the buffer
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self.source.read
        self.readinto = self.source.readinto
        self.readline = self.source.readline
        self.metastack: list[Any] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, limit = self.read, self.dispatch, self.limits.opcodes
        count = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle data was truncated")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise pickle.UnpicklingError(f"invalid load key, {key!r}")
                handler(self)
                count += 1
                if not count & 0x3FF:
                    self.budget.check()
                    if count > limit:
                        raise InspectionLimit(f"the pickle runs more than {limit:,} opcodes")
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    # -- globals ---------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol 2 writes ``__builtin__.set``), renamed the way pickle itself does
        raw = f"{module}.{name}"
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        for seen in (raw, qualified) if raw != qualified and dangerous.danger(raw) else (qualified,):
            self._record(seen)
        if qualified in SPECIAL:
            return SPECIAL[qualified]
        if qualified not in self._classes:
            self._classes[qualified] = type("Opaque", (Opaque,), {"_global": qualified, "__module__": "inert"})
        return self._classes[qualified]

    def _record(self, qualified: str) -> None:
        if qualified not in self.globals:
            if len(self.globals) >= self.limits.globals:
                raise InspectionLimit(f"the pickle names more than {self.limits.globals:,} globals")
            self.globals.append(qualified)

    def load_stack_global(self) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        if type(name) is not str or type(module) is not str:
            self._record(dangerous.COMPUTED)
            self.append(self.find_class("<computed>", "<global named at load time>"))
            return
        self.append(self.find_class(module, name))

    dispatch[pickle.STACK_GLOBAL[0]] = load_stack_global

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, location, numel = pid[1], _text(pid[2]), _text(pid[3]), pid[4]
            type_name = str(getattr(storage_type, "_global", type(storage_type).__name__)).rsplit(".", 1)[-1]
            dtype, itemsize = STORAGE_DTYPES.get(type_name, (f"unknown ({type_name[:60]})", 0))
            count = numel if isinstance(numel, int) and not isinstance(numel, bool) and numel >= 0 else 0
            ref = StorageRef(key, dtype, location, count, itemsize)
            self.storages.setdefault(key, ref)
            return ref
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module":
            return pid[1]  # legacy whole-module pickles name each module class by persistent id
        return Opaque(pid)

    # -- calls: only stand-ins and the side-effect-free SPECIAL functions ------------------------

    def call(self, func: Any, args: Any) -> Any:
        """What ``func(*args)`` stands for; never calls anything but a stand-in or a SPECIAL function."""
        if not isinstance(args, tuple):
            raise pickle.UnpicklingError(f"call arguments are a {type(args).__name__}, not a tuple")
        if func is collections.OrderedDict:
            made: collections.OrderedDict = collections.OrderedDict()
            for pair in (args[0] if args and isinstance(args[0], (list, tuple)) else ()):
                if isinstance(pair, (list, tuple)) and len(pair) == 2:
                    self.set_item(made, pair[0], pair[1])
            return made
        if func is _rebuild_from_type:
            inner, new_type, inner_args, state = (list(args) + [None] * 4)[:4]
            return self.call(inner, inner_args if isinstance(inner_args, tuple) else ()) if inner is not None \
                else Opaque(inner, new_type, inner_args, state)
        if func in _SPECIAL_FUNCTIONS or (isinstance(func, type) and issubclass(func, Opaque)):
            return func(*args)
        if isinstance(func, Opaque):  # a stand-in's attribute or result called again (getattr tricks)
            return Opaque(func, *args)
        raise pickle.UnpicklingError(f"the pickle calls a {type(func).__name__}, which is not callable")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, cls: Any, args: tuple) -> Any:
        if isinstance(cls, type) and issubclass(cls, Opaque):
            return cls.__new__(cls, *args)
        if cls is collections.OrderedDict:
            return collections.OrderedDict()
        return Opaque(cls, *args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args if isinstance(args, tuple) else (args,)))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, (args, kwargs)))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _instantiate(self, klass: Any, args: list) -> None:
        self.append(self.call(klass, tuple(args)))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Opaque):
            inst.state = state
        elif isinstance(inst, collections.OrderedDict) and isinstance(state, dict):
            metadata = state.get("_metadata") if all(type(k) is str for k in state) else None
            if isinstance(metadata, dict):
                inst._metadata = metadata  # type: ignore[attr-defined]
        # state for anything else (a tensor reference, a plain dict) is ignored: nothing to rebuild

    dispatch[pickle.BUILD[0]] = load_build

    # -- containers: keys and members are hashed, so they are measured first --------------------

    def check_key(self, key: Any) -> Any:
        if type(key) in _SCALARS or isinstance(key, (Opaque, type)):
            return key
        if isinstance(key, (tuple, frozenset)):
            measure(key, self.limits.key_nodes, min(self.limits.depth, 64), self.budget,
                    what="a dict key or set member")
            return key
        raise pickle.UnpicklingError(f"a dict key or set member is a {type(key).__name__} (unhashable)")

    def set_item(self, target: Any, key: Any, value: Any) -> None:
        if not isinstance(target, (dict, Opaque)):
            raise pickle.UnpicklingError(f"SETITEM on a {type(target).__name__}")
        target[self.check_key(key)] = value

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self.set_item(self.stack[-1], key, value)

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        target = self.stack[-1]
        for i in range(0, len(items) - 1, 2):
            self.set_item(target, items[i], items[i + 1])

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_dict(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        made: dict[Any, Any] = {}
        for i in range(0, len(items) - 1, 2):
            self.set_item(made, items[i], items[i + 1])
        self.append(made)

    dispatch[pickle.DICT[0]] = load_dict

    def load_additems(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        target = self.stack[-1]
        if not isinstance(target, set):
            raise pickle.UnpicklingError(f"ADDITEMS on a {type(target).__name__}")
        target.update(self.check_key(item) for item in items)

    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_frozenset(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        self.append(frozenset(self.check_key(item) for item in items))

    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def load_appends(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        target = self.stack[-1]
        if not isinstance(target, (list, Opaque)):
            raise pickle.UnpicklingError(f"APPENDS on a {type(target).__name__}")
        target.extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, (list, Opaque)):
            raise pickle.UnpicklingError(f"APPEND on a {type(target).__name__}")
        target.append(value)

    dispatch[pickle.APPEND[0]] = load_append

    # -- declared sizes ----------------------------------------------------------------------

    def _declared(self, what: str, size: int) -> int:
        left = self.length - self.source.tell()
        frame = self._unframer.current_frame
        if frame is not None:
            left += len(frame.getbuffer()) - frame.tell()
        if size > left:
            if size > IMPLAUSIBLE_BYTES:
                raise pickle.UnpicklingError(f"{what} declares {size:,} bytes but only {max(left, 0):,} remain "
                                             "(no file is that big: a hostile or corrupt pickle)")
            raise EOFError(f"pickle data was truncated: {what} declares {size:,} bytes but {max(left, 0):,} remain")
        return size

    def load_bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        self.append(bytearray(self.read(self._declared("BYTEARRAY8", size))))

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def load_frame(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        self._declared("FRAME", size)  # the frame's bytes follow in the same buffer

    dispatch[pickle.FRAME[0]] = load_frame

    def _long(self, size: int) -> None:
        if size < 0:
            raise pickle.UnpicklingError("LONG pickle has negative byte count")
        if size > self.limits.long_bytes:
            raise InspectionLimit(f"a pickled integer of {size:,} bytes (limit {self.limits.long_bytes:,})")
        self.append(pickle.decode_long(self.read(self._declared("LONG", size))))

    def load_long1(self) -> None:
        self._long(self.read(1)[0])

    dispatch[pickle.LONG1[0]] = load_long1

    def load_long4(self) -> None:
        self._long(struct.unpack("<i", self.read(4))[0])

    dispatch[pickle.LONG4[0]] = load_long4

    def load_next_buffer(self) -> None:
        raise pickle.UnpicklingError("the pickle refers to out-of-band buffers (protocol 5), which torch never writes")

    dispatch[pickle.NEXT_BUFFER[0]] = load_next_buffer


for _opcode, _fmt in ((pickle.BINBYTES8, "<Q"), (pickle.BINUNICODE8, "<Q"), (pickle.BINBYTES, "<I"),
                      (pickle.BINUNICODE, "<I"), (pickle.BINSTRING, "<i")):
    def _sized(self: InertUnpickler, _op: bytes = _opcode, _f: str = _fmt) -> None:
        (size,) = struct.unpack(_f, self.read(struct.calcsize(_f)))
        if size < 0:
            raise pickle.UnpicklingError("a pickled string has a negative length")
        data = self.read(self._declared(_NAMES[_op[0]], size))
        if _op in (pickle.BINBYTES8, pickle.BINBYTES):
            self.append(bytes(data))
        elif _op == pickle.BINSTRING:
            self.append(self._decode_string(data))  # type: ignore[attr-defined]
        else:
            self.append(str(data, "utf-8", "surrogatepass"))

    InertUnpickler.dispatch[_opcode[0]] = _sized


@dataclasses.dataclass
class PickleSkeleton:
    """What an inert read of one pickle found."""

    root: Any
    globals: list[str]
    storages: dict[str, StorageRef]


class PickleFailed(pickle.UnpicklingError):
    """The pickle does not read; ``globals`` holds what it named before it broke."""

    def __init__(self, message: str, globals: list[str]) -> None:
        super().__init__(message)
        self.globals = globals


class PickleOverLimits(InspectionLimit):
    """The pickle asks for more than the limits; ``globals`` holds what it named until then."""

    def __init__(self, message: str, globals: list[str]) -> None:
        super().__init__(message)
        self.globals = globals


def read_skeleton(data: bytes | BinaryIO, limits: Limits = DEFAULT, budget: Optional[Budget] = None,
                  size: Optional[int] = None) -> PickleSkeleton:
    """Inert read of one pickle (bytes, or a stream positioned at it whose total ``size`` is given).

    A stream is read in a bounded chunk (1 MiB, then at most ``limits.pickle_bytes``) and left
    positioned just after the pickle. Raises :class:`PickleFailed` on a broken stream,
    :class:`PickleOverLimits` past a limit; both carry the globals named so far.
    """
    budget = budget or Budget(limits)
    if isinstance(data, (bytes, bytearray)):
        if len(data) > limits.pickle_bytes:
            raise PickleOverLimits(f"a pickle of {len(data):,} bytes, over the {limits.pickle_bytes:,}-byte limit", [])
        return _read_buffer(io.BytesIO(data), limits, budget)
    start = data.tell()
    available = (size if size is not None else _stream_size(data)) - start
    for chunk in (min(MB, limits.pickle_bytes), limits.pickle_bytes):
        data.seek(start)
        buffer = io.BytesIO(data.read(min(chunk, available)))
        try:
            skeleton = _read_buffer(buffer, limits, budget)
        except PickleFailed:
            if chunk >= available or chunk == limits.pickle_bytes or not _ran_out(buffer):
                if chunk < available and _ran_out(buffer):
                    raise PickleOverLimits(f"a pickle longer than the {limits.pickle_bytes:,}-byte limit",
                                           []) from None
                raise
            continue
        data.seek(start + buffer.tell())
        return skeleton
    raise AssertionError("unreachable")  # pragma: no cover


def _ran_out(buffer: io.BytesIO) -> bool:
    return buffer.tell() >= len(buffer.getbuffer())


def _read_buffer(buffer: io.BytesIO, limits: Limits, budget: Budget) -> PickleSkeleton:
    unpickler = InertUnpickler(buffer, limits, budget)
    collecting = gc.isenabled()
    gc.disable()  # the cyclic collector rescans every new container: 5x slower on a pickle of many tuples
    try:
        root = unpickler.load()
        measure(root, limits.expanded_nodes, limits.depth, budget)
    except InspectionLimit as exc:
        raise PickleOverLimits(str(exc), unpickler.globals) from None
    except RecursionError:
        raise PickleOverLimits("the pickle nests deeper than Python can follow", unpickler.globals) from None
    except MemoryError:
        raise PickleOverLimits("the pickle asks for more memory than the inspection allows",
                               unpickler.globals) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile stream is a broken pickle, never a crash
        raise PickleFailed(f"{type(exc).__name__}: {_text(exc)}", unpickler.globals) from None
    finally:
        if collecting:
            gc.enable()
    return PickleSkeleton(root, unpickler.globals, unpickler.storages)


def _stream_size(stream: BinaryIO) -> int:
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return end


def measure(root: Any, max_nodes: int, max_depth: int, budget: Optional[Budget] = None,
            what: str = "the pickled object") -> tuple[int, int]:
    """(nodes with every shared reference expanded, depth) of ``root``, without expanding anything.

    Counts by dynamic programming over the object graph (each object once), so 60 levels of a
    tuple holding itself twice (2**60 nodes expanded) costs 60 steps. Raises
    :class:`InspectionLimit` past ``max_nodes`` or ``max_depth``; a cycle counts once.
    """
    expanded: dict[int, int] = {}
    depth: dict[int, int] = {}
    path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    steps = 0
    while stack:
        obj, done = stack.pop()
        ident = id(obj)
        if done:
            path.discard(ident)
            nodes, deepest = 1, 0
            for child in children(obj):
                nodes += expanded.get(id(child), 1)
                deepest = max(deepest, depth.get(id(child), 0))
            if nodes > max_nodes:
                raise InspectionLimit(f"{what} expands to more than {max_nodes:,} objects through shared "
                                      f"references (a 'billion laughs' memo bomb)")
            expanded[ident], depth[ident] = nodes, deepest + 1
            continue
        if ident in expanded or ident in path:
            continue
        if len(path) >= max_depth:
            raise InspectionLimit(f"{what} nests deeper than {max_depth:,} levels")
        steps += 1
        if budget is not None and not steps & 0x3FF:
            budget.check()
        if type(obj) in _SCALARS:
            expanded[ident], depth[ident] = 1, 1
            continue
        path.add(ident)
        stack.append((obj, True))
        stack.extend((child, False) for child in children(obj) if id(child) not in expanded and id(child) not in path)
    return expanded.get(id(root), 1), depth.get(id(root), 1)


def _text(value: Any, limit: int = 200) -> str:
    """``str(value)`` for a value from a file, bounded (never expands a big or deep object)."""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, BaseException):
        return str(value)[:limit]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:limit]).decode("latin1")
    if type(value) in _SCALARS:
        return repr(value)[:limit] if not isinstance(value, int) or value.bit_length() < 4000 else "<big int>"
    return f"<{type(value).__name__}>"


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
