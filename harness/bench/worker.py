"""One release's side of an interleaved ``bench-compare``: a process that times turns on request.

The coordinator (:mod:`harness.bench.pair`) starts one worker per side with that release's Python
(``python -m harness.bench.worker``), and sends one JSON request per line on stdin; each answer is
one JSON line on the original stdout (stray prints go to stderr):

- ``{"op": "prepare", "items": [...], "workdir": DIR, "threads": N, "plugins": [...], "clock": C}``:
  pin the threads, import the plugins, build each benchmark's subject and timed work. Answers
  ``{"ready": {id: null | {"skip": why} | {"problem": why}}, "machine": {...}}``.
- ``{"op": "turn", "id": ID}``: one round of that benchmark: untimed setup, timed target, untimed
  teardown, with the garbage collector off. Answers ``{"seconds": s}`` or ``{"problem": why}``.
- ``{"op": "finish"}``: each benchmark's own check that its rounds did the work, and its info; the
  subjects are freed. Answers ``{"problems": {id: why | null}, "info": {id: {...}}}``.

Timing happens here, inside the worker, so the pipe's latency is never part of a turn.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from harness.bench.items import item_id


class Server:
    """The worker's state between requests: the prepared benchmarks of one size."""

    def __init__(self) -> None:
        self.works: dict[str, Any] = {}
        self.guards: dict[str, Any] = {}
        self.workspace: Any = None
        self.clock: Callable[[], float] = lambda: 0.0

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        from harness.bench.interleave import pin_threads
        from harness.bench.operations import OPERATIONS
        from harness.bench.rounds import CLOCKS, _Guard
        from harness.bench.workspace import Workspace
        from harness.plugins import load_plugins

        self.finish()
        pin_threads(request.get("threads"))
        load_plugins(request.get("plugins", []))
        self.clock = CLOCKS[request.get("clock", "wall")]
        root = Path(tempfile.mkdtemp(prefix="ckpt-bench-worker-", dir=request["workdir"]))
        self.workspace = Workspace(root, None)
        ready: dict[str, Optional[dict[str, str]]] = {}
        for item in request["items"]:
            name, operation = item_id(item), OPERATIONS[item["operation"]]
            try:
                subject = self.workspace.subject(item["size_bytes"], item.get("format"))
                reason = operation.unavailable(subject) if subject.payload is not None else None
                if reason:
                    ready[name] = {"skip": reason}
                    continue
                work = operation.make(subject, item["cache"])
            except Exception as exc:  # this benchmark fails; the others still run
                ready[name] = {"problem": f"setting up raised {type(exc).__name__}: {exc}"}
                continue
            self.works[name], self.guards[name] = work, _Guard(work)
            ready[name] = None
        return {"ready": ready, "machine": machine()}

    def turn(self, request: dict[str, Any]) -> dict[str, Any]:
        guard = self.guards[request["id"]]
        guard.setup()
        started = self.clock()
        guard.target()
        elapsed = self.clock() - started
        guard.teardown()
        return {"problem": guard.problem} if guard.problem else {"seconds": elapsed}

    def finish(self, request: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        problems = {name: guard.problem or self.works[name].finish() for name, guard in self.guards.items()}
        info = {name: dict(work.info) for name, work in self.works.items()}
        self.works.clear()
        self.guards.clear()
        if self.workspace is not None:
            self.workspace.close()
            self.workspace.root.rmdir()
            self.workspace = None
        gc.collect()  # off while timing (see serve); what the rounds left in cycles goes here, untimed
        return {"problems": problems, "info": info}


def machine() -> dict[str, Any]:
    """What the worker's figures depend on: torch, Python, threads."""
    import platform

    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "executable": sys.executable}


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer one JSON request per line until stdin closes, with the garbage collector off."""
    server = Server()
    gc.disable()
    for line in requests:
        request = json.loads(line)
        try:
            answer = getattr(server, request["op"])(request)
        except Exception as exc:  # the coordinator reports it beside the benchmark
            answer = {"error": f"{request.get('op')} raised {type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    server.finish()


def main() -> int:
    answers, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the answers
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
