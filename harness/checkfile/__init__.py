"""``ckpt-harness check``: will a user's own checkpoints load in the torch releases they name?

:mod:`harness.inspect` reads each file without running it; :mod:`harness.checkfile.envs` finds or
builds each release's environment; :mod:`harness.checkfile.worker` loads the files there the
three ways the matrix does; :mod:`harness.checkfile.verdicts` turns the results into a verdict
per release with the concrete fix. :func:`run_release` ties one release together.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from harness import containers
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


def run_release(python: Path, release: str, inspections: list[Inspection], imports: list[str],
                allow_unsafe: bool, advance: Callable[[], None],
                paths: Sequence[Path] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the worker with ``python``; return its environment and one result per file (in order).

    The worker runs isolated (``python -I``: no PYTHONPATH, no user site, not the script's folder nor the
    current directory on ``sys.path``) in a private temporary folder, so a ``torch.py`` or ``sitecustomize``
    lying where the user stands is never imported. ``--import`` modules come only from ``paths`` (``--path``)."""
    with tempfile.TemporaryDirectory(prefix="ckpt-check-") as folder:
        request, out = Path(folder) / "request.json", Path(folder) / "results.jsonl"
        request.write_text(json.dumps({"files": [request_item(i) for i in inspections], "imports": imports,
                                       "allow_unsafe": allow_unsafe, "main_globals": main_globals(inspections),
                                       "paths": [str(Path(p).resolve()) for p in paths], "out": str(out)}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        process = subprocess.Popen([str(python), "-I", str(WORKER), str(request)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env, cwd=folder)
        stdout, stderr_stream = process.stdout, process.stderr
        assert stdout is not None and stderr_stream is not None  # both are pipes
        for line in stdout:
            if line.startswith("progress "):
                advance()
        stderr = stderr_stream.read()
        process.wait()
        lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return _parse(release, lines, len(inspections), stderr)


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
        results.append({"loads": {"default": {"status": "fail", "message": f"the loader crashed: {crashed[0]}",
                                              "warnings": []}}, "map_location": None, "needs_globals": None})
    for result in results:
        result["torch"] = environment["torch"]
    return {**environment, "notes": header.get("notes", [])}, results


def same_release(release: str, torch_version: str) -> bool:
    """True when ``torch_version`` (``2.5.1+cu124``) is the release asked for."""
    return torch_version.split("+", 1)[0] == release
