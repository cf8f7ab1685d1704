"""Run every catalog entry's reproducer in real release environments: ``python -m harness.breaks.verify``.

A same-release entry is written and read in each release; a cross-release entry is written in each
release and read in each. The result per run ("2.5.1" or "2.13.0->2.5.1") is whether the break
showed; :func:`disagreements` compares them with the entry's ranges and its recorded ``verified``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from harness.breaks import Break, load

RUNNER = Path(__file__).resolve().parent / "runner.py"


def _batch(python: Path, tasks: list[dict]) -> list[dict]:
    """Run ``tasks`` in one process of ``python``; one result per task."""
    if not tasks:
        return []
    folder = Path(tasks[0]["path"]).parent
    listing = folder / f"tasks-{len(list(folder.glob('tasks-*')))}.json"
    listing.write_text(json.dumps(tasks))
    done = subprocess.run([str(python), str(RUNNER), str(listing)], capture_output=True, text=True, timeout=1200,
                          cwd=folder)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return lines + [{"error": tail}] * (len(tasks) - len(lines))


def reproduce_all(entries: list[Break], pythons: dict[str, Path]) -> dict[str, dict[str, Optional[bool]]]:
    """entry id → run key ("2.5.1" or "2.13.0->2.5.1") → did the break show (None: the reproducer failed)."""
    results: dict[str, dict[str, Optional[bool]]] = {e.id: {} for e in entries}
    with tempfile.TemporaryDirectory(prefix="ckpt-breaks-") as folder:
        files = {}
        for entry in entries:
            files[entry.id] = Path(folder) / f"{entry.id}.py"
            files[entry.id].write_text(entry.reproduce)
        written: dict[tuple[str, str], bool] = {}
        for writer, python in pythons.items():
            tasks = [{"mode": "write", "code": str(files[e.id]), "path": f"{folder}/{e.id}-{writer}.bin"}
                     for e in entries]
            for entry, outcome in zip(entries, _batch(python, tasks), strict=True):
                written[(entry.id, writer)] = "error" not in outcome
        for reader, python in pythons.items():
            runs = [(e, w) for e in entries for w in pythons if (e.cross or w == reader) and written[(e.id, w)]]
            tasks = [{"mode": "shows", "code": str(files[e.id]), "path": f"{folder}/{e.id}-{w}.bin"} for e, w in runs]
            for (entry, writer), outcome in zip(runs, _batch(python, tasks), strict=True):
                key = f"{writer}->{reader}" if entry.cross else reader
                results[entry.id][key] = outcome.get("shows")
        for entry in entries:
            for writer in pythons:
                if not written[(entry.id, writer)]:
                    for reader in (pythons if entry.cross else [writer]):
                        results[entry.id][f"{writer}->{reader}" if entry.cross else writer] = None
    return results


def reproduce(entry: Break, pythons: dict[str, Path]) -> dict[str, Optional[bool]]:
    """One entry's runs (see :func:`reproduce_all`)."""
    return reproduce_all([entry], pythons)[entry.id]


def disagreements(entry: Break, results: dict[str, Optional[bool]]) -> list[str]:
    """Where a run disagrees with the entry's ranges or its recorded ``verified``."""
    problems = []
    for key, shown in results.items():
        if shown is None:
            continue
        writer, _, reader = key.partition("->")
        claimed = entry.shows_in(reader or writer, writer if reader else None)
        if shown != claimed:
            problems.append(f"{entry.id} {key}: showed={shown}, the range says {claimed}")
        if key in entry.verified and entry.verified[key] != shown:
            problems.append(f"{entry.id} {key}: showed={shown}, verified records {entry.verified[key]}")
    return problems


def main(argv: list[str]) -> int:
    from harness.checkfile import envs

    releases = argv or ["2.5.1", "2.13.0"]
    pythons = {r: p for r in releases if (p := envs.find(r)) is not None}
    problems = []
    entries = list(load().values())
    for entry, (ident, results) in zip(entries, reproduce_all(entries, pythons).items(), strict=True):
        print(json.dumps({"id": ident, "results": results}), flush=True)
        problems += disagreements(entry, results)
    print("\n".join(problems) or "every run agrees with the catalog")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
