"""The load of one damaged copy, in its own process.

The runner's fork server imports this module once (so torch is imported once, not per load) and
forks a fresh process per damaged copy, which runs :func:`run_job`: it limits its own core dumps
and address space, sends its output to a file in the copy's folder, loads the copy with the
format's loader, compares what it got with the manifest's fingerprint and writes one JSON result.
Dying by a signal, hanging or blowing the memory limit is for the runner to see from outside.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import warnings
from pathlib import Path
from typing import Any

import torch

from harness import compat
from harness.case import CASES
from harness.checks._compare import fingerprint_differences
from harness.corrupt import STARTED_MARKER, vetted
from harness.fingerprint import fingerprint
from harness.formats import FORMATS, LoadRequest
from harness.records import describe_exception

#: modules loaders import lazily on first use (seconds each): imported once here, before forking
PRELOAD = ("torch.export", "torch._export.serde.serialize", "safetensors.torch", "numpy")

torch.set_num_threads(1)  # one core per load: the runner runs loads side by side
FORMATS.discover()
CASES.discover()
for _name in PRELOAD:
    compat.import_optional(_name)

#: messages of allocation failures that surface as ordinary exceptions
MEMORY_MESSAGES = ("can't allocate memory", "bad_alloc", "out of memory", "cannot allocate memory",
                   "not enough memory")


def limit_resources(memory_bytes: int) -> None:
    """No core files; at most ``memory_bytes`` more address space than the process maps now."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux: no address-space limit
        return
    limit = mapped + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (C++ messages included) to ``path``."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    os.close(handle)


def run_job(job: dict[str, Any]) -> None:
    """Entry point of the forked process: load ``job["path"]``, write ``job["result"]``."""
    folder = Path(job["folder"])
    os.chdir(folder)
    (folder / STARTED_MARKER).touch()  # the runner tells a loader's crash from a start-up failure by it
    redirect_output(folder / "output.txt")
    limit_resources(int(job["memory_bytes"]))
    result = load_and_compare(job)
    temp = Path(job["result"]).with_suffix(".tmp")
    temp.write_text(json.dumps(result))
    os.replace(temp, job["result"])


def load_and_compare(job: dict[str, Any]) -> dict[str, Any]:
    """``{"outcome": ..., "detail": ...}``: exception (typed), memory, corrupted, or intact."""
    for plugin in job.get("plugins", ()):
        importlib.import_module(plugin)  # plugin formats register themselves in this process too
    fmt = FORMATS.get(job["format"])
    case = CASES.get(job["case"]) if job["case"] in CASES.names() else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            allow = [name for name in job.get("allow") or [] if vetted.is_vetted(name)]  # never beyond the list
            with compat.RefuseFullUnpickle(), compat.allowed_globals(allow):
                loaded = fmt.open(Path(job["path"]), LoadRequest(job["mode"], case=case))
    except MemoryError as exc:
        return {"outcome": "memory-blowup", "detail": describe_exception(exc)}
    except Exception as exc:
        text = describe_exception(exc)
        if any(m in text.lower() for m in MEMORY_MESSAGES):
            return {"outcome": "memory-blowup", "detail": text}
        return {"outcome": "clean-exception", "detail": text, "type": type(exc).__name__}
    try:
        actual = fingerprint(fmt.contents(loaded))
    except Exception as exc:  # it loaded, but what came back is not the checkpoint
        return {"outcome": "silent-corruption", "detail": f"loaded an object that is not the checkpoint: "
                                                          f"{describe_exception(exc)}"}
    expected = job["expected"]
    problems = fingerprint_differences(expected["tensors"], actual["tensors"])
    problems += [f"value {k} differs" for k in sorted(set(expected["scalars"]) | set(actual["scalars"]))
                 if expected["scalars"].get(k) != actual["scalars"].get(k)]
    if problems:
        return {"outcome": "silent-corruption", "detail": f"{len(problems)} difference(s): {'; '.join(problems[:3])}"}
    return {"outcome": "intact", "detail": f"{len(actual['tensors'])} tensors identical to the manifest"}
