"""The four answers per file and model, from both sides' worker answers: one structure the report renders."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

from harness.checkfile.verdicts import FIXED, LOADS, UNSAFE_ONLY, judge
from harness.upgrade import run as runner
from harness.upgrade.config import Project


def as_seen_by(inspection: Any, side: runner.Side) -> Any:
    """The inspection with its globals sorted against ``side``'s own weights_only allowlist.

    The caller inspects without importing torch (``allowlist=None``); which globals a release
    accepts is that release's business, so each side's worker reports its allowlist.
    """
    from harness.inspect import sort_globals

    names: Optional[list[str]] = side.answers["environment"].get("allowlist")
    seen = copy.copy(inspection)
    sort_globals(seen, None if names is None else frozenset(names))
    return seen


def file_answer(inspection: Any, side: runner.Side) -> dict[str, Any]:
    """Load: the verdict headline, the informative error, the verified fix, the known breaks."""
    inspection = as_seen_by(inspection, side)
    got = side.answers["files"].get(str(inspection.path), {})
    if got.get("status") != "ok":
        return {"headline": f"not tried ({got.get('error', 'the worker did not reach it')})", "fixes": [],
                "error": got.get("error", ""), "known_breaks": [], "torch": side.answers["environment"]["torch"]}
    verdict = judge(inspection, side.release, {**got["result"], "torch": side.answers["environment"]["torch"]})
    failing = [f"{mode}: {r['message']}" for mode, r in verdict.loads.items() if r["status"] == "fail"]
    return {"headline": verdict.headline, "fixes": verdict.fixes, "error": failing[0] if failing else "",
            "known_breaks": verdict.known_breaks, "torch": verdict.torch,
            "code": (verdict.verified_fix or {}).get("code")}


def section(side: runner.Side, kind: str, name: str) -> dict[str, Any]:
    return side.answers.get(kind, {}).get(name, {"status": "error", "error": "no answer"})


def build(project: Project, inspections: list[Any], a: runner.Side, b: runner.Side) -> dict[str, Any]:
    files = []
    for inspection in inspections:
        trusted = Path(inspection.path) in project.trusted
        answers = {s.release: file_answer(inspection, s) for s in (a, b)}
        headline = answers[b.release]["headline"]
        ok = headline in (LOADS, FIXED) or (trusted and headline == UNSAFE_ONLY)
        files.append({"path": str(Path(inspection.path).relative_to(project.root)), "container": inspection.container,
                      "structure": inspection.structure, "trusted": trusted, "answers": answers, "ok": ok})
    models = []
    for spec in project.models:
        per = {s.release: section(s, "models", spec["name"]) for s in (a, b)}
        outputs = runner.outputs(spec["name"], a, b)
        ok = per[b.release].get("status") == "ok" and outputs["status"] != "not tried"
        models.append({"name": spec["name"], "spec": spec, "answers": per, "outputs": outputs, "ok": ok})
    trainings = []
    for spec in project.trainings:
        per = {s.release: section(s, "trainings", spec["name"]) for s in (a, b)}
        resumed = runner.resume(spec["name"], a, b, project.resume_tolerance)
        ok = per[b.release].get("status") == "ok" and resumed.get("within_tolerance", False)
        trainings.append({"name": spec["name"], "spec": spec, "answers": per, "resume": resumed, "ok": ok})
    imports = {s.release: s.answers.get("imports", {}) for s in (a, b)}
    everything = all(x["ok"] for x in files + models + trainings)
    return {"from": a.release, "to": b.release, "torch": {s.release: s.answers["environment"]["torch"] for s in (a, b)},
            "seconds": {s.release: round(s.seconds, 1) for s in (a, b)},
            "phases": {s.release: s.answers.get("timings", {}) for s in (a, b)}, "files": files, "models": models,
            "trainings": trainings, "imports": imports, "ok": everything, "project": str(project.root)}
