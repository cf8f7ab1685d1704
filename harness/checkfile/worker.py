"""Load a user's checkpoints with one torch release: run by ``ckpt-harness check --torch``.

Run as a script with the release's own interpreter (``python worker.py REQUEST.json``), so it
needs nothing but the standard library and torch: the harness's feature probes are loaded from
``harness/compat.py`` by path, the loaders from ``harness/checkfile/loaders.py``. The request names
the files, the loader of each (chosen on the harness's side by :mod:`harness.containers`: nothing
here looks at a file's bytes), the modules to import first and whether full unpickling is allowed. Each file's
result is one JSON line in the request's ``out`` file; ``progress N`` lines go to stdout.

Safety: ``weights_only=False`` runs whatever code the pickle names. The worker uses it (and a
release's default ``torch.load`` where that default is a full unpickle, as before 2.6) only when
the request says ``allow_unsafe`` (``ckpt-harness check --allow-unsafe``).

An ``--import`` module that fails to import is the verdict of each file that needs the user's code
(one naming classes no list knows): "not tried: --import X failed in torch Y: <error>"; the other
files are loaded as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import re
import resource
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

COMPAT = Path(__file__).resolve().parents[1] / "compat.py"
SAFEGLOBALS = Path(__file__).resolve().parent / "safeglobals.py"
LOADERS = Path(__file__).resolve().parent / "loaders.py"


def load_compat(path: Path = COMPAT, name: str = "_harness_compat") -> Any:
    """``harness/compat.py`` (or another stdlib+torch module) by path: the harness may not be installed here."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, without terminal colour codes."""
    text = ANSI.sub("", str(exc)).strip()
    lines = text.splitlines()
    detail = INFORMATIVE.search(text)  # torch's own line naming what was refused, after its generic sentence
    tail = f" [{detail.group(1).strip()[:300]}]" if detail and detail.group(1).strip() not in lines[:1] else ""
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}{tail}"[:700]


INFORMATIVE = re.compile(r"(Unsupported global: GLOBAL \S+|Can only build[^\n]*|Unsupported operand[^\n]*|"
                         r"Trying to [^\n]*)")


def import_user_modules(names: list[str], main_globals: list[str]) -> tuple[list[str], dict[str, str]]:
    """Import ``--import`` modules; make ``__main__.X`` globals the file names resolvable from them.

    Returns the notes and, per module that failed to import, its error (one line)."""
    notes = []
    modules, failed = [], {}
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:
            failed[name] = describe(exc)
    main = sys.modules["__main__"]
    for qualified in main_globals:
        attribute = qualified.split(".", 1)[1]
        for module in modules:
            if hasattr(module, attribute) and not hasattr(main, attribute):
                setattr(main, attribute, getattr(module, attribute))
                notes.append(f"__main__.{attribute} taken from {module.__name__}")
    return notes, failed


def map_location_for(devices: list[str], torch: Any) -> Optional[str]:
    """'cpu' when the file holds CUDA storages this machine cannot place, else None."""
    indices = [int(d.split(":")[1]) if ":" in d else 0 for d in devices if d.startswith("cuda")]
    if not indices:
        return None
    if not torch.cuda.is_available() or max(indices) >= torch.cuda.device_count():
        return "cpu"
    return None


#: for items that name no loader (``harness.upgrade`` builds its own, with the inspection's label only):
#: the loader of each label as harness.containers declares it; any other label (a broken file) torch.load's
#: weights_only load, as before loaders were chosen on the harness's side
BY_LABEL = {"zip": "torch.load", "legacy": "torch.load", "torchscript": "torch.jit.load",
            "export_pt2": "torch.export.load", "safetensors": "safetensors"}


def loader_of(item: dict[str, Any]) -> tuple[Optional[str], bool]:
    """The item's loader and whether it is a torch pickle: as the request says, else from its label."""
    if "loader" in item:
        return item["loader"], bool(item.get("pickled"))
    name = BY_LABEL.get(item["container"], "torch.load")
    return name, name == "torch.load"


def load_modes(item: dict[str, Any], compat: Any, allow_unsafe: bool, map_location: Optional[str]
               ) -> dict[str, Callable[[], Any] | str]:
    """Mode name → a loader, or the reason the mode is skipped (the item's loader, see loaders.py)."""
    loaders = load_compat(LOADERS, "_harness_loaders")
    request = loaders.Request(item["path"], compat, allow_unsafe, map_location, bool(item.get("broken")),
                              item.get("args") or {})
    found: dict[str, Callable[[], Any] | str] = loaders.modes(loader_of(item)[0], request, item.get("why", ""))
    return found


def run_mode(loader: Callable[[], Any] | str) -> dict[str, Any]:
    if isinstance(loader, str):
        return {"status": "skip", "message": loader, "warnings": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loader()
            status, message = "pass", ""
        except Exception as exc:
            status, message = "fail", describe(exc)
    seen = sorted({f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:200]}" for w in caught
                   if str(w.message).strip()})
    return {"status": status, "message": message, "warnings": seen}


def check_file(item: dict[str, Any], compat: Any, allow_unsafe: bool,
               import_failed: Optional[dict[str, str]] = None) -> dict[str, Any]:
    import contextlib

    import torch

    map_location = map_location_for(item.get("devices", []), torch)
    modes = load_modes(item, compat, allow_unsafe, map_location)
    if import_failed and item.get("needs_imports"):
        failure = "; ".join(f"--import {name} failed in torch {torch.__version__}: {error}"
                            for name, error in import_failed.items())
        return {"path": item["path"], "map_location": map_location, "needs_globals": None, "verified_fix": None,
                "import_error": failure, "loads": {mode: run_mode(f"not tried: {failure}") for mode in modes}}
    loads = {}
    for mode, loader in modes.items():
        # without --allow-unsafe no loader reaches a full unpickle, not even one that falls back to it by
        # itself (torch.export.load does): every torch.load inside is weights_only
        with contextlib.nullcontext() if allow_unsafe else compat.RefuseFullUnpickle():
            loads[mode] = run_mode(loader)
    needs = None
    if loader_of(item)[1] and any(r["status"] == "fail" for r in loads.values()):
        needs = compat.unsafe_globals(item["path"])
    return {"path": item["path"], "map_location": map_location, "loads": loads, "needs_globals": needs,
            "verified_fix": verified_fix(item, loads, needs, map_location)}


def verified_fix(item: dict[str, Any], loads: dict[str, Any], needs: Optional[list[str]],
                 map_location: Optional[str]) -> Optional[dict[str, Any]]:
    """Where weights_only refused a pickle: the allowlist that makes it load here, searched and run (or why not)."""
    refused = [r for m, r in loads.items() if m in ("default", "weights_only") and r["status"] == "fail"
               and "eights only load failed" in r["message"]]
    if item.get("broken") or not loader_of(item)[1] or not refused:
        return None
    return load_compat(SAFEGLOBALS, "_harness_safeglobals").verify(item["path"], map_location, needs)


def environment(compat: Any) -> dict[str, Any]:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(),
            "default_weights_only": compat.default_weights_only(), "cuda_available": torch.cuda.is_available(),
            "executable": sys.executable}


def limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the worker uses now plus ``extra_mb`` (0: no cap); no core dumps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if extra_mb <= 0:
        return
    try:
        size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return
    ceiling = size + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    # Run with ``python -I``: neither this folder nor the current directory is on sys.path. The user's
    # ``--path`` folders, and only those, come first (for ``--import``).
    sys.path[:0] = [path for path in request.get("paths", []) if path not in sys.path]
    compat = load_compat()  # imports torch: the memory cap counts from here
    limit_memory(int(request.get("memory_mb", 0)))
    with open(request["out"], "w") as out:
        notes, failed = import_user_modules(request.get("imports", []), request.get("main_globals", []))
        out.write(json.dumps({"environment": environment(compat), "notes": notes}) + "\n")
        for n, item in enumerate(request["files"], 1):
            print(f"loading {n}", flush=True)  # the caller names this file if the deadline stops us here
            out.write(json.dumps(check_file(item, compat, request.get("allow_unsafe", False), failed)) + "\n")
            out.flush()
            print(f"progress {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
