"""Verified safe-globals fixes: grow an allowlist until a ``weights_only`` load works, in this release.

Run inside a release's interpreter (by :mod:`harness.checkfile.worker` and
:mod:`harness.upgrade.worker`), so it needs only the standard library and torch; it is loaded by
path. :func:`verify` loads the file with ``weights_only=True`` under the allowlist, reads the next
refused global from torch's own error ("Unsupported global: GLOBAL x", "Can only build ... got
<class 'x'>"), adds it and tries again, until the file loads or a name remains that is not on
:data:`HARMLESS` — a fixed list of plain-data classes and reconstructors. A name outside that list
is never imported, resolved or printed as something to allowlist. Every attempt runs the very
snippet that would be printed (``exec`` of its text), in a forked child, so an allowlist added with
the process-wide ``add_safe_globals`` cannot leak into the worker's other loads.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from typing import Any, Optional

#: module → attribute names that may be allowlisted: plain data and numpy's array/scalar rebuilders.
#: Nothing here runs user-chosen code when weights_only's unpickler calls or builds it.
HARMLESS: dict[str, tuple[str, ...]] = {
    "numpy": ("ndarray", "dtype"),
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy.dtypes": ("*DType",),  # numpy.dtypes.Float64DType, UInt32DType, ... (checked: numpy.dtype subclasses)
    "argparse": ("Namespace",),
    "pathlib": ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"),
    "collections": ("OrderedDict", "defaultdict", "deque", "Counter"),
    "builtins": ("list", "dict", "set", "frozenset", "tuple", "int", "float", "complex", "str", "bytes",
                 "bytearray", "bool", "slice", "range"),
    "datetime": ("datetime", "date", "time", "timedelta", "timezone"),
    "torch": ("Size",),
}

REFUSED = (
    re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),
    re.compile(r"Can only build [^\n]*?got <class '([\w.]+)'>"),
    re.compile(r"Trying to (?:call reduce for|instantiate unsupported class) <?(?:class )?'?([\w.]+)"),
)
INFORMATIVE = re.compile(r"(Unsupported global[^\n]*|Can only build[^\n]*|Unsupported operand[^\n]*|"
                         r"Trying to [^\n]*|WeightsUnpickler error: [^\n]*)")
MAX_TRIES = 24


def harmless(name: str) -> bool:
    """True when ``name`` (``module.qualname``) is on the vetted list (by name only: nothing imported)."""
    module, _, attribute = name.rpartition(".")
    allowed = HARMLESS.get(module, ())
    return any(attribute == a or (a.startswith("*") and attribute.endswith(a[1:]) and attribute.isidentifier())
               for a in allowed)


def resolve(name: str) -> Optional[Any]:
    """The object for a harmless ``name``; None for any other name or one this environment lacks."""
    if not harmless(name):
        return None
    module_name, _, attribute = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except Exception:
        return None
    if module_name == "numpy.dtypes":
        import numpy

        if not (isinstance(obj, type) and issubclass(obj, numpy.dtype)):
            return None
    return obj


def informative(message: str) -> str:
    """torch's line that says what was refused, not the generic first sentence ('' when none)."""
    found = INFORMATIVE.search(message)
    return found.group(1).strip()[:300] if found else ""


def next_refused(message: str) -> Optional[str]:
    """The global a weights_only error says it refused, or None."""
    for pattern in REFUSED:
        found = pattern.search(message)
        if found:
            name = found.group(1)
            return name if "." in name else f"builtins.{name}"  # torch prints builtins bare ("GLOBAL list")
    return None


def snippet(path: str, names: list[str], aliased: set[str], api: str, map_location: Optional[str]) -> str:
    """The fix as code: imports, the allowlist (context manager or add_safe_globals), the load."""
    modules = sorted({n.rpartition(".")[0] for n in names} - {"builtins", "torch"})
    items = []
    for name in names:
        expression = name.split(".", 1)[1] if name.startswith("builtins.") else name
        items.append(f"({expression}, {name!r})" if name in aliased else expression)
    listing = "[" + ", ".join(items) + "]"
    extra = f", map_location={map_location!r}" if map_location else ""
    load = f"checkpoint = torch.load({path!r}, weights_only=True{extra})"
    lines = ["import torch", *[f"import {m}" for m in modules]]
    if api == "safe_globals":
        lines += [f"with torch.serialization.safe_globals({listing}):", f"    {load}"]
    else:
        lines += [f"torch.serialization.add_safe_globals({listing})", load]
    return "\n".join(lines)


def allowlist_api(torch: Any) -> Optional[str]:
    """``safe_globals`` (context manager) or ``add_safe_globals`` where the release has one, else None."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):
        return "safe_globals"
    if hasattr(serialization, "add_safe_globals"):
        return "add_safe_globals"
    return None


def _attempt(code: str) -> Optional[str]:
    """Run ``code`` in a forked child; None when it ran through, else the error text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(code, "<fix>", "exec"), {})
            result = ""
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}" or "error"
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(result))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as source:
        text = source.read()
    _, status = os.waitpid(pid, 0)
    if not text:
        return f"the load crashed (wait status {status})"
    result = json.loads(text)
    return result or None


def verify(path: str, map_location: Optional[str] = None, seed: Optional[list[str]] = None) -> dict[str, Any]:
    """Search for an allowlist that makes ``torch.load(path, weights_only=True)`` work here.

    Returns ``{"status": "loads"|"not-allowlistable"|"unsupported"|"stuck", "names", "code", "error",
    "remaining", "tries"}``; ``code`` is set only when it loaded. ``seed`` (e.g. from
    ``get_unsafe_globals_in_checkpoint``) starts the list; a non-harmless name in it ends the search
    at once.
    """
    import torch

    api = allowlist_api(torch)
    if api is None:
        return {"status": "unsupported", "names": [], "code": None, "error": "", "remaining": None, "tries": 0,
                "why": "this release has no torch.serialization.add_safe_globals (it exists from 2.4)"}
    names: list[str] = []
    aliased: set[str] = set()
    for name in seed or []:
        if not harmless(name):
            return _stop("not-allowlistable", names, "", name, 0)
        if resolve(name) is not None and name not in names:
            names.append(name)
    error = ""
    for tries in range(1, MAX_TRIES + 1):
        code = snippet(path, names, aliased, api, map_location)
        failure = _attempt(code)
        if failure is None:
            return {"status": "loads", "names": names, "code": code, "error": "", "remaining": None,
                    "tries": tries, "api": api}
        error = informative(failure) or failure.splitlines()[0][:300]
        refused = next_refused(failure)
        if refused is None:
            return _stop("stuck", names, error, None, tries)
        if not harmless(refused):
            return _stop("not-allowlistable", names, error, refused, tries)
        if refused in names:  # resolved under another name (numpy.core → numpy._core): allowlist by its file name
            if refused in aliased:
                return _stop("stuck", names, error, refused, tries)
            aliased.add(refused)
            continue
        if resolve(refused) is None:
            return _stop("stuck", names, error, refused, tries)
        names.append(refused)
    return _stop("stuck", names, error, None, MAX_TRIES)


def _stop(status: str, names: list[str], error: str, remaining: Optional[str], tries: int) -> dict[str, Any]:
    return {"status": status, "names": names, "code": None, "error": error, "remaining": remaining, "tries": tries}


if __name__ == "__main__":  # pragma: no cover - manual use: python safeglobals.py FILE
    print(json.dumps(verify(sys.argv[1]), indent=1))
