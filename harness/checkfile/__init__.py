"""``ckpt-harness check``: will a user's own checkpoints load in the torch releases they name?

:mod:`harness.inspect` reads each file without running it; :mod:`harness.checkfile.envs` finds or
builds each release's environment; :mod:`harness.checkfile.worker` loads the files there the
three ways the matrix does; :mod:`harness.checkfile.verdicts` turns the results into a verdict
per release with the concrete fix. :func:`run_release` ties one release together.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from harness import containers
from harness.checkfile import launch
from harness.errors import HarnessError
from harness.inspect import PICKLE_CONTAINERS, Inspection

WORKER = Path(__file__).resolve().parent / "worker.py"


def container_of(inspection: Inspection) -> Optional[containers.Container]:
    """The container a file is laid out as, from :mod:`harness.containers`: the one inspection named, or for
    a broken file the one its first bytes claim (a cut-short zip is still torch.save's), or None."""
    if inspection.loadable:
        return containers.labelled(inspection.container)
    path = Path(inspection.path)
    return containers.identify(path) if path.is_dir() else containers.claiming(containers.head(path))


def request_item(inspection: Inspection) -> dict[str, Any]:
    """What the worker needs to know about one file: where it is, which loader reads it, how it was found."""
    container = container_of(inspection)
    path = Path(inspection.path).resolve()
    return {"path": str(path), "container": inspection.container, "devices": inspection.devices,
            "broken": not inspection.loadable, "loader": container.loader if container else None,
            "pickled": bool(container and container.pickled),
            "args": container.loader_args(path) if container else {},
            "why": f"{inspection.container}: {inspection.detail}",
            "needs_imports": needs_imports(inspection)}


def needs_imports(inspection: Inspection) -> bool:
    """The file names classes from outside torch that are on no list (the user's own code), or from a
    script's ``__main__``: an ``--import`` that failed decides its verdict."""
    return (any(not g.startswith("torch.") for g in inspection.suspicious_globals)
            or any(g.startswith("__main__.") for g in inspection.globals))


def main_globals(inspections: list[Inspection]) -> list[str]:
    """Classes the files pickled from a script's ``__main__`` (``--import`` can supply them)."""
    return sorted({g for i in inspections if i.container in PICKLE_CONTAINERS for g in i.globals
                   if g.startswith("__main__.")})


#: a release's worker budget unless ``--load-seconds`` says otherwise; the extra address space it may take
#: after importing torch is ``--load-memory-mb``, by default the larger of this and 3× the largest file
LOAD_SECONDS = 900.0
LOAD_MEMORY_MB = 16384


def default_memory_mb(inspections: Sequence[Inspection]) -> int:
    """The worker's memory cap by default: room for three copies of the largest file, at least 16 GiB."""
    largest = max((_size(Path(i.path)) for i in inspections), default=0)
    return max(LOAD_MEMORY_MB, 3 * largest // 2**20)


def _size(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    except OSError:
        return 0


def run_release(python: Path, release: str, inspections: list[Inspection], imports: list[str],
                allow_unsafe: bool, advance: Callable[[], None],
                paths: Sequence[Path] = (), seconds: float = LOAD_SECONDS,
                memory_mb: Optional[int] = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the worker with ``python``; return its environment and one result per file (in order).

    The worker runs isolated (:mod:`harness.checkfile.launch`) in a private temporary folder, so a
    ``torch.py`` or ``sitecustomize`` lying where the user stands is never imported; ``--import``
    modules come only from ``paths`` (``--path``). It may add ``memory_mb`` of address space after
    importing torch (a load past it fails with a MemoryError) and is killed after ``seconds``: the
    file it was loading then fails as "did not finish", and the files after it are "not tried"."""
    with tempfile.TemporaryDirectory(prefix="ckpt-check-") as folder:
        request, out = Path(folder) / "request.json", Path(folder) / "results.jsonl"
        cap = default_memory_mb(inspections) if memory_mb is None else memory_mb
        request.write_text(json.dumps({"files": [request_item(i) for i in inspections], "imports": imports,
                                       "allow_unsafe": allow_unsafe, "main_globals": main_globals(inspections),
                                       "paths": [str(Path(p).resolve()) for p in paths], "out": str(out),
                                       "memory_mb": cap}))
        loading = [0]

        def on_line(line: str) -> None:
            if line.startswith("progress "):
                advance()
            elif line.startswith("loading "):
                loading[0] = int(line.split()[1])

        stderr, stopped = launch.stream(python, WORKER, request, Path(folder), seconds, on_line)
        lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if stopped is not None:
        return _stopped(release, lines, inspections, loading[0], stopped)
    return _parse(release, lines, len(inspections), stderr)


def _stopped(release: str, lines: list[dict[str, Any]], inspections: list[Inspection], loading: int,
             seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answers of a worker its deadline stopped: the file it was loading did not finish in time
    (a finding), the ones after it were not tried; the ones before keep their results."""
    header = lines[0] if lines else {}
    environment = header.get("environment") or {"torch": release}
    results = lines[1:]
    budget = f"{seconds:g} s (--load-seconds)"
    while len(results) < len(inspections):
        n = len(results) + 1
        if n == loading:
            message, status = f"did not finish within the worker's budget of {budget}", "fail"
        else:
            blocked = (f"the worker was stopped at its budget of {budget} while loading "
                       f"{Path(inspections[loading - 1].path).name}" if loading else
                       f"the worker was stopped at its budget of {budget} before loading any file "
                       f"(importing torch or the --import modules)")
            message, status = blocked, "skip"
        results.append(_unanswered("deadline", status, message))
    return _answers(environment, header, results)


def _parse(release: str, lines: list[dict[str, Any]], expected: int,
           stderr: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header = lines[0] if lines else {}
    environment: Optional[dict[str, Any]] = header.get("environment")
    if environment is None:
        tail = stderr.strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"torch {release}: the check worker did not start: {tail[0]}")
    results = lines[1:]
    crashed = stderr.strip().splitlines()[-1:] or ["no message"]
    for _ in range(expected - len(results)):  # a crash (a segfaulting loader) ends the worker early
        results.append(_unanswered("default", "fail", f"the loader crashed: {crashed[0]}"))
    return _answers(environment, header, results)


def _unanswered(mode: str, status: str, message: str) -> dict[str, Any]:
    """The result the worker did not write for a file (it crashed or was stopped): one load mode saying why."""
    return {"loads": {mode: {"status": status, "message": message, "warnings": []}}, "map_location": None,
            "needs_globals": None}


def _answers(environment: dict[str, Any], header: dict[str, Any],
             results: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The worker's environment (with its notes) and its results, each stamped with the torch it ran in."""
    for result in results:
        result["torch"] = environment["torch"]
    return {**environment, "notes": header.get("notes", [])}, results


def same_release(release: str, torch_version: str) -> bool:
    """True when ``torch_version`` (``2.5.1+cu124``) is the release asked for."""
    return torch_version.split("+", 1)[0] == release
