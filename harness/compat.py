"""Every difference between torch releases that the harness cares about, detected by feature.

No other module compares version strings: they ask this one. Each probe tries the feature
(``hasattr``, an import, a signature) so that backports and nightlies are judged by what they
can do, not by what they call themselves.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from typing import Any, Optional

import torch


@functools.cache
def _load_parameters() -> frozenset[str]:
    return frozenset(inspect.signature(torch.load).parameters)


def load_accepts(keyword: str) -> bool:
    """True when ``torch.load`` takes ``keyword`` (``weights_only``, ``mmap``, ...)."""
    return keyword in _load_parameters()


def has_weights_only() -> bool:
    """``torch.load(weights_only=...)`` exists."""
    return load_accepts("weights_only")


def has_torch_export_save() -> Optional[str]:
    """None when ``torch.export.save``/``load`` exist, else the reason they do not."""
    try:
        export = importlib.import_module("torch.export")
    except Exception as exc:  # pragma: no cover - depends on the release
        return f"torch.export does not import: {type(exc).__name__}: {_first_line(exc)}"
    missing = [name for name in ("export", "save", "load") if not hasattr(export, name)]
    if missing:
        return f"torch.export lacks {', '.join(missing)}"
    return None


def has_jit() -> Optional[str]:
    """None when TorchScript scripting, tracing, saving and loading exist."""
    jit = getattr(torch, "jit", None)
    missing = [n for n in ("script", "trace", "save", "load") if not hasattr(jit, n)]
    return f"torch.jit lacks {', '.join(missing)}" if missing else None


def import_optional(name: str) -> tuple[Optional[Any], Optional[str]]:
    """Import ``name``; return ``(module, None)`` or ``(None, one-line reason)``.

    Any exception counts, not only ImportError: torchvision from PyPI beside a CPU-only torch
    raises RuntimeError ("operator torchvision::nms does not exist") at import.
    """
    try:
        return importlib.import_module(name), None
    except Exception as exc:
        return None, f"{name} does not import here: {type(exc).__name__}: {_first_line(exc)}"


def untyped_storage(tensor: torch.Tensor) -> Any:
    """The storage under ``tensor`` in whichever API the release offers."""
    if hasattr(tensor, "untyped_storage"):
        return tensor.untyped_storage()
    return tensor.storage()  # pragma: no cover - torch < 2.0


def storage_nbytes(tensor: torch.Tensor) -> int:
    """Size in bytes of the whole storage under ``tensor``."""
    storage = untyped_storage(tensor)
    return int(storage.nbytes()) if hasattr(storage, "nbytes") else int(storage.size() * tensor.element_size())


def storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    """An identity for the storage under ``tensor``: two tensors share it when the keys match."""
    if tensor.device.type == "meta" or storage_nbytes(tensor) == 0:
        return ("unshared", id(tensor))  # nothing to share: empty and meta storages have no bytes
    return (str(tensor.device), int(untyped_storage(tensor).data_ptr()))


def torch_load_kwargs(weights_only: Optional[bool], map_location: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``torch.load`` that this release understands.

    ``weights_only=None`` means "the release's default": the keyword is not passed at all.
    Asking for ``weights_only`` where the release lacks it raises, never silently degrades.
    """
    kwargs: dict[str, Any] = {}
    if map_location is not None:
        kwargs["map_location"] = map_location
    if weights_only is not None:
        if not has_weights_only():
            raise RuntimeError("this torch.load has no weights_only parameter")
        kwargs["weights_only"] = weights_only
    return kwargs


def torchvision_version() -> Optional[str]:
    """torchvision's version where it imports, else None."""
    module, _ = import_optional("torchvision")
    return getattr(module, "__version__", None) if module else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def default_weights_only() -> Optional[bool]:
    """What a plain ``torch.load(path)`` does here: True (weights_only), False, or None (no such option).

    Releases that resolve the default at call time expose ``_default_to_weights_only`` (it also
    honours TORCH_FORCE_WEIGHTS_ONLY_LOAD / TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD); older ones default to
    a full unpickle.
    """
    if not has_weights_only():
        return None
    resolve = getattr(torch.serialization, "_default_to_weights_only", None)
    if resolve is None:
        return False
    try:
        default = bool(resolve(None))  # torch.load's own pickle_module default
    except Exception:  # pragma: no cover - private API drift
        return None
    truthy = ("1", "y", "yes", "true")
    if os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in truthy:
        return True
    if os.getenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in truthy:
        return False
    return default


def allowed_globals(names: list[str]) -> Any:
    """A context in which a weights_only load also accepts the globals ``names`` ("module.qualname").

    Uses ``torch.serialization.safe_globals`` where it exists, else ``add_safe_globals`` (for the
    rest of the process); where neither exists, nothing is allowed. Names that do not resolve are
    left out, so the load refuses them as before.
    """
    import contextlib

    objects = [obj for obj in (_resolve(name) for name in names) if obj is not None]
    serialization = torch.serialization
    if not objects:
        return contextlib.nullcontext()
    if hasattr(serialization, "safe_globals"):
        return serialization.safe_globals(objects)
    if hasattr(serialization, "add_safe_globals"):
        serialization.add_safe_globals(objects)
    return contextlib.nullcontext()


def _resolve(name: str) -> Any:
    """The object named ``module.qualname`` (the longest importable module prefix), or None."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
            return obj
        except AttributeError:
            return None
    return None


def unsafe_globals(path: Any) -> Optional[list[str]]:
    """Globals a weights_only load of ``path`` would refuse, where the release can tell (else None)."""
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:
        return None
    try:
        return sorted(finder(str(path)))
    except Exception:
        return None


def weights_only_allowlist() -> Optional[frozenset[str]]:
    """Globals (``module.name``) a weights_only load accepts here, built-in and user-added; None where unknown."""
    module, _ = import_optional("torch._weights_only_unpickler")
    allowed = getattr(module, "_get_allowed_globals", None)
    if allowed is None:
        return None
    try:
        names = set(allowed())
        user = getattr(module, "_get_user_allowed_globals", None)
        names.update(user() if user else ())
    except Exception:  # pragma: no cover - private API drift
        return None
    return frozenset(names)


def mmap_load_unavailable() -> Optional[str]:
    """None when ``torch.load`` can map a zip-container file (``mmap=True``), else why not."""
    return None if load_accepts("mmap") else "torch.load has no mmap parameter in this release"


class MmapLoads:
    """Inside ``with MmapLoads():`` every ``torch.load`` of a zip-container file maps it (``mmap=True``).

    Uses ``torch.utils.serialization.config.load.mmap`` where the release has it; elsewhere
    ``torch.load`` is wrapped for the duration of the block. Callers check
    :func:`mmap_load_unavailable` first.
    """

    def __enter__(self) -> MmapLoads:
        config, _ = import_optional("torch.utils.serialization.config")
        self._load_config = getattr(config, "load", None)
        if self._load_config is not None and hasattr(self._load_config, "mmap"):
            self._saved = self._load_config.mmap
            self._load_config.mmap = True
        else:
            self._load_config = None
            self._saved = torch.load
            torch.load = functools.partial(self._saved, mmap=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._load_config is not None:
            self._load_config.mmap = self._saved
        else:
            torch.load = self._saved


# -- partial loads and device mapping (issue 4) ---------------------------------------------------


def has_mmap() -> bool:
    """``torch.load(mmap=True)`` exists (zip containers only)."""
    return load_accepts("mmap")


def load_state_dict_assign() -> Optional[str]:
    """None when ``Module.load_state_dict`` takes ``assign`` (meta-device loading), else why not."""
    parameters = inspect.signature(torch.nn.Module.load_state_dict).parameters
    return None if "assign" in parameters else "this Module.load_state_dict has no assign parameter"


def meta_device_context() -> Optional[str]:
    """None when ``with torch.device('meta'):`` builds modules on the meta device, else why not."""
    return None if hasattr(torch.device("meta"), "__enter__") else "torch.device is not a context manager here"


def consume_prefix_function() -> Optional[Any]:
    """``torch.nn.modules.utils.consume_prefix_in_state_dict_if_present`` where the release has it."""
    try:
        from torch.nn.modules import utils
    except Exception:  # pragma: no cover - every supported release has the module
        return None
    return getattr(utils, "consume_prefix_in_state_dict_if_present", None)


def torch_compile() -> Optional[str]:
    """None when ``torch.compile`` exists (its wrapper adds ``_orig_mod.`` to state_dict keys), else why not."""
    if not hasattr(torch, "compile"):
        return "torch.compile does not exist in this release"
    _, reason = import_optional("torch._dynamo")
    return reason


@functools.cache
def map_location_meta() -> Optional[str]:
    """None when ``torch.load(map_location='meta')`` loads tensors onto the meta device, else why not."""
    import io

    buffer = io.BytesIO()
    torch.save({"t": torch.zeros(2)}, buffer)
    buffer.seek(0)
    try:
        loaded = torch.load(buffer, **torch_load_kwargs(True if has_weights_only() else None, "meta"))
    except Exception as exc:
        return f"torch.load(map_location='meta') fails here: {type(exc).__name__}: {_first_line(exc)}"
    device = loaded["t"].device.type
    return None if device == "meta" else f"torch.load(map_location='meta') gave a {device} tensor"


def cuda_device_count() -> int:
    """CUDA devices usable here (0 without a CUDA build or a GPU)."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - broken driver installs
        return 0


# -- ONNX and torch.distributed.checkpoint (feature probes only) ---------------------------------


def onnx_unavailable() -> Optional[str]:
    """None when ``torch.onnx.export`` exists and onnx and onnxruntime import, else why not."""
    if not hasattr(getattr(torch, "onnx", None), "export"):
        return "torch.onnx.export does not exist in this release"
    for name in ("onnx", "onnxruntime"):
        _, reason = import_optional(name)
        if reason:
            return f"{reason} (install the onnx extra)"
    return None


def onnx_export_kwargs() -> dict[str, Any]:
    """Keywords that pick the TorchScript-based exporter: ``dynamo=False`` where ``torch.onnx.export``
    has a ``dynamo`` switch (2.5+; the dynamo exporter became the default in 2.9), else nothing (the
    only exporter older releases offer)."""
    parameters = inspect.signature(torch.onnx.export).parameters
    return {"dynamo": False} if "dynamo" in parameters else {}


def dcp_unavailable() -> Optional[str]:
    """None when ``torch.distributed.checkpoint`` has ``save``/``load`` and the ``state_dict`` helpers
    (get/set_model_state_dict, get/set_optimizer_state_dict; 2.2+), else why not."""
    if not torch.distributed.is_available():
        return "torch.distributed is not available in this build"
    dcp, reason = import_optional("torch.distributed.checkpoint")
    if reason:
        return reason
    helpers, reason = import_optional("torch.distributed.checkpoint.state_dict")
    if reason:
        return reason
    missing = [n for n in ("save", "load") if not hasattr(dcp, n)]
    missing += [n for n in ("get_model_state_dict", "set_model_state_dict", "get_optimizer_state_dict",
                            "set_optimizer_state_dict") if not hasattr(helpers, n)]
    return f"torch.distributed.checkpoint lacks {', '.join(missing)}" if missing else None


def dcp_format_utils() -> Optional[str]:
    """None when ``dcp_to_torch_save`` and ``torch_save_to_dcp`` exist (2.3+), else why not."""
    utils, reason = import_optional("torch.distributed.checkpoint.format_utils")
    if reason:
        return reason
    missing = [n for n in ("dcp_to_torch_save", "torch_save_to_dcp") if not hasattr(utils, n)]
    return f"torch.distributed.checkpoint.format_utils lacks {', '.join(missing)}" if missing else None


# -- no full unpickle (issue 10) -------------------------------------------------------------------


class FullUnpickleRefused(RuntimeError):
    """A ``torch.load`` inside :class:`RefuseFullUnpickle` asked for (or defaulted to) a full unpickle."""


class RefuseFullUnpickle:
    """Inside ``with RefuseFullUnpickle():`` every ``torch.load`` is a weights_only load.

    ``weights_only=False`` raises :class:`FullUnpickleRefused`; a call that leaves ``weights_only``
    out gets ``weights_only=True`` where this release's default is a full unpickle (before 2.6);
    a release without ``weights_only`` refuses every load. It guards loaders that call
    ``torch.load`` themselves, such as ``torch.export.load``, which falls back to
    ``weights_only=False`` when the weights_only load fails (2.13 still does). ``torch.load`` and
    ``torch.serialization.load`` are wrapped for the duration of the block (one thread at a time).
    """

    def __enter__(self) -> RefuseFullUnpickle:
        self._saved = (torch.load, torch.serialization.load)
        original = self._saved[0]

        @functools.wraps(original)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not has_weights_only():
                raise FullUnpickleRefused("this torch.load has no weights_only parameter, so every load is a full "
                                          "unpickle: refused for a file that is not trusted")
            if kwargs.get("weights_only") is False or (kwargs.get("weights_only") is None
                                                         and not default_weights_only()):
                if kwargs.get("weights_only") is False:
                    raise FullUnpickleRefused("torch.load(weights_only=False) refused: a full unpickle runs code "
                                              "from a file that is not trusted")
                kwargs["weights_only"] = True
            return original(*args, **kwargs)

        torch.load = guarded
        torch.serialization.load = guarded
        return self

    def __exit__(self, *exc: object) -> None:
        torch.load, torch.serialization.load = self._saved
