"""How ``check --torch`` reads each container in a release: one loader per :attr:`Container.loader`.

Run inside a release's interpreter by :mod:`harness.checkfile.worker`, so it needs only the standard
library and torch (onnx, onnxruntime, safetensors and numpy where that environment has them) and is
loaded by path. The harness side decides which loader a file gets, from :mod:`harness.containers`;
nothing here looks at a file's bytes to guess what it is.

A loader maps load-mode names to a callable that loads the file, or to the reason the mode is not
tried. Nothing reaches a full unpickle unless ``allow_unsafe`` says the user trusts the file:
``weights_only=False``, a release's default ``torch.load`` where that is a full unpickle (before
2.6) and DCP, whose reader unpickles the folder's ``.metadata`` with plain ``pickle.load``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Optional, Union

UNSAFE_SKIP = ("weights_only=False executes code named in the file's pickle: pass --allow-unsafe to try it, "
               "only for a file you trust")
DCP_UNSAFE_SKIP = ("DCP's reader unpickles the folder's .metadata in full (it runs code named in it): pass "
                   "--allow-unsafe to try it, only for a folder you trust")

#: a mode's loader, or the reason it is not tried
Mode = Union[Callable[[], Any], str]


@dataclasses.dataclass(frozen=True)
class Request:
    """One file to load in this release."""

    path: str
    #: harness/compat.py, loaded by path in this release
    compat: Any
    allow_unsafe: bool
    #: 'cpu' where the file holds CUDA storages this machine cannot place, else None
    map_location: Optional[str]
    #: the inspection found the file broken: only the safe load runs, to show this release's own error
    broken: bool = False
    #: names inside the layout the container module passed along (the sharded index's file name...)
    args: dict[str, str] = dataclasses.field(default_factory=dict)


LOADERS: dict[str, Callable[[Request], dict[str, Mode]]] = {}


def loader(name: str) -> Callable[[Callable[[Request], dict[str, Mode]]], Callable[[Request], dict[str, Mode]]]:
    """Register the loader for containers whose :attr:`Container.loader` is ``name``."""
    def add(function: Callable[[Request], dict[str, Mode]]) -> Callable[[Request], dict[str, Mode]]:
        LOADERS[name] = function
        return function
    return add


def modes(name: Optional[str], request: Request, why: str = "") -> dict[str, Mode]:
    """The load modes of the loader ``name``; none known: one skipped mode saying why."""
    if name is None or name not in LOADERS:
        return {"load": f"no loader of a torch release reads this file: {why or 'its layout is unknown'}"}
    return LOADERS[name](request)


def _not_installed(reason: Optional[str], what: str, release: str) -> Optional[str]:
    return f"{what} is not installed in torch {release}'s environment ({reason})" if reason else None


def _release() -> str:
    import torch

    return str(torch.__version__)


@loader("torch.load")
def torch_load(request: Request) -> dict[str, Mode]:
    """The release's default ``torch.load``, ``weights_only=True`` and (trusted files only) ``weights_only=False``."""
    import torch

    compat = request.compat

    def load(weights_only: Optional[bool]) -> Callable[[], Any]:
        return lambda: torch.load(request.path, **compat.torch_load_kwargs(weights_only, request.map_location))

    found: dict[str, Mode] = {}
    default_is_unsafe = compat.default_weights_only() is not True
    found["default"] = (f"this release's default torch.load is a full unpickle; {UNSAFE_SKIP}"
                        if default_is_unsafe and not request.allow_unsafe else load(None))
    found["weights_only"] = load(True) if compat.has_weights_only() else "this torch.load has no weights_only parameter"
    if request.broken:
        return {"weights_only": found["weights_only"]}
    found["unsafe"] = load(False) if request.allow_unsafe else UNSAFE_SKIP
    return found


@loader("torch.jit.load")
def jit_load(request: Request) -> dict[str, Mode]:
    import torch

    return {"torch.jit.load": lambda: torch.jit.load(request.path, map_location=request.map_location)}


@loader("torch.export.load")
def export_load(request: Request) -> dict[str, Mode]:
    import torch

    reason = request.compat.has_torch_export_save()
    return {"torch.export.load": reason or (lambda: torch.export.load(request.path))}


def _safetensors(request: Request) -> tuple[Any, Optional[str]]:
    module, reason = request.compat.import_optional("safetensors.torch")
    return module, _not_installed(reason, "safetensors", _release())


@loader("safetensors")
def safetensors_load(request: Request) -> dict[str, Mode]:
    module, reason = _safetensors(request)
    return {"safetensors.load_file": reason or (lambda: module.load_file(request.path,
                                                                          device=request.map_location or "cpu"))}


@loader("sharded_safetensors")
def sharded_load(request: Request) -> dict[str, Mode]:
    """Every shard the index names with safetensors' ``load_file``, each holding every tensor mapped to it."""
    module, reason = _safetensors(request)
    return {"safetensors.load_file": reason or (lambda: load_shards(module, Path(request.path), request.args["index"],
                                                                    request.map_location or "cpu"))}


def load_shards(module: Any, folder: Path, index_name: str, device: str) -> dict[str, Any]:
    """The state dict the shards hold together, as a Hugging Face loader reads it; a tensor the index
    maps to a shard that lacks it raises KeyError (never a weight left out)."""
    weight_map: dict[str, str] = json.loads((folder / index_name).read_text(encoding="utf-8"))["weight_map"]
    state: dict[str, Any] = {}
    for shard in sorted(set(weight_map.values())):
        held = module.load_file(str(folder / shard), device=device)
        missing = sorted(name for name, where in weight_map.items() if where == shard and name not in held)
        if missing:
            raise KeyError(f"{shard} lacks {', '.join(missing[:3])}, which the index maps to it")
        state.update(held)
    return state


@loader("dcp")
def dcp_load(request: Request) -> dict[str, Mode]:
    """DCP's own reader, without a process group, into an empty state dict (trusted folders only)."""
    if not request.allow_unsafe:
        return {"dcp.load": DCP_UNSAFE_SKIP}
    missing = request.compat.dcp_format_utils()
    if missing:
        return {"dcp.load": f"this release cannot load a DCP folder without its model: {missing}"}
    return {"dcp.load": lambda: load_dcp(request.path)}


def load_dcp(folder: str) -> dict[str, Any]:
    """What ``dcp_to_torch_save`` does, in memory: every tensor and object the folder holds."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    state: dict[str, Any] = {}
    try:
        _load_state_dict(state, storage_reader=FileSystemReader(folder), planner=_EmptyStateDictLoadPlanner(),
                         no_dist=True)
    except CheckpointException as exc:  # a BaseException: re-raised as one the worker records
        failures = [f[0] if isinstance(f, tuple) and f else f for f in getattr(exc, "failures", {}).values()]
        raise RuntimeError("; ".join(f"{type(e).__name__}: {e}" for e in failures) or str(exc)) from None
    return state


@loader("onnx")
def onnx_load(request: Request) -> dict[str, Mode]:
    """onnx's checker and an onnxruntime session, each where this environment has the package."""
    onnx, reason = request.compat.import_optional("onnx")
    runtime, runtime_reason = request.compat.import_optional("onnxruntime")
    release = _release()
    return {"onnx.checker": _not_installed(reason, "onnx", release) or (lambda: onnx.checker.check_model(request.path)),
            "onnxruntime": _not_installed(runtime_reason, "onnxruntime", release) or (
                lambda: runtime.InferenceSession(request.path, providers=["CPUExecutionProvider"]))}


@loader("numpy.load")
def numpy_load(request: Request) -> dict[str, Mode]:
    """numpy's own reader with ``allow_pickle=False``: every array read, none unpickled."""
    numpy, reason = request.compat.import_optional("numpy")

    def load() -> dict[str, Any]:
        with numpy.load(request.path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    return {"numpy.load": _not_installed(reason, "numpy", _release()) or load}
