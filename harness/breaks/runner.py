"""Run catalog reproducers in this interpreter: ``python runner.py TASKS.json``.

Needs only the standard library and torch (a release environment). Each task is
``{"mode": "write"|"shows", "code": FILE, "path": PATH}``; one JSON line per task is printed:
``{"ok": true}`` after ``write``, ``{"shows": bool, "detail": str}`` after ``shows``, or
``{"error": "..."}`` when the reproducer itself failed. Each task runs in a forked child, so one
reproducer's allowlists, warnings filters or crashes cannot reach the next.
"""

from __future__ import annotations

import json
import os
import sys
import warnings


def run(task: dict) -> dict:
    scope: dict = {"__name__": "reproducer"}
    try:
        with open(task["code"]) as source:
            exec(compile(source.read(), "<reproduce>", "exec"), scope)
        if task["mode"] == "write":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if "write" in scope:
                    scope["write"](task["path"])
            return {"ok": True}
        shows, detail = scope["shows"](task["path"])
        return {"shows": bool(shows), "detail": str(detail)[:200]}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def isolated(task: dict) -> dict:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(run(task)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as source:
        text = source.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else {"error": "the reproducer crashed"}


def main(tasks_file: str) -> int:
    import torch  # noqa: F401  - imported once, before the forks

    with open(tasks_file) as source:
        tasks = json.load(source)
    for task in tasks:
        print(json.dumps(isolated(task)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
