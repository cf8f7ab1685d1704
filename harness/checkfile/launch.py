"""How ``check`` and ``upgrade`` start a worker in a release's interpreter: isolated, with a deadline.

The worker runs as ``python -I`` (no user site, neither the script's folder nor the current
directory on ``sys.path``, no ``PYTHON*`` variables honoured) from a private folder, so a
``torch.py`` or ``sitecustomize`` lying where the user stands is never imported. Its bytecode goes
under :func:`pycache_root`, never into the release's environment (which may be read-only or
shared), and a warm cache spares every later run compiling torch from source. A worker that runs
past its deadline is killed; the caller says which file it was loading then.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Optional


def pycache_root() -> Path:
    """Where the workers' bytecode goes (``-X pycache_prefix``): never into the release's environment."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "checkpoint-harness" / "pycache"


def command(python: Path, script: Path, request: Path) -> list[str]:
    """``python -I -X pycache_prefix=… script request``: the worker's command line."""
    return [str(python), "-I", "-X", f"pycache_prefix={pycache_root()}", str(script), str(request)]


def environment() -> dict[str, str]:
    """The caller's environment without PYTHON* variables (``-I`` ignores them too; belt and braces)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "PYTHONWARNINGS": "ignore"}


def stream(python: Path, script: Path, request: Path, cwd: Path, seconds: float,
           on_line: Callable[[str], None]) -> tuple[str, Optional[float]]:
    """Run the worker, handing each stdout line to ``on_line`` as it comes; kill it after ``seconds``.

    Returns its stderr and, when the deadline stopped it, the budget it ran past (else None)."""
    process = subprocess.Popen(command(python, script, request), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment(), cwd=cwd)
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        stdout, stderr_stream = process.stdout, process.stderr
        assert stdout is not None and stderr_stream is not None  # both are pipes
        # stderr is read on a thread: a worker that fills the pipe must not block its own stdout
        captured: list[str] = []
        reader = threading.Thread(target=lambda: captured.append(stderr_stream.read()), daemon=True)
        reader.start()
        for line in stdout:
            on_line(line)
        process.wait()
        reader.join()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    return "".join(captured), (seconds if expired.is_set() else None)
