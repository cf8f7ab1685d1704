"""Run the worker in both releases (in parallel) and put the answers side by side.

The four answers per file and model: **Load** (each file's verdict headline in A and B, with the
verified fix), **Partial** (the model's file into the new code in B, with the fix that ran),
**Resume** (N steps in A and B from the same checkpoint: bit-exact, max abs diff per parameter
group, RNG-stream draws compared on their own), **Outputs** (forward on the user's batch, A vs B).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from harness.checkfile import launch
from harness.errors import HarnessError
from harness.upgrade.config import Project

WORKER = Path(__file__).resolve().parent / "worker.py"
OK_LOADS = ("loads", "loads after a fix (verified)")


@dataclasses.dataclass
class Side:
    """One release: its name, interpreter, and the worker's answers."""

    release: str
    python: Path
    answers: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    out: Optional[Path] = None

    def file(self, name: str) -> Path:
        """``name`` in this side's folder (set once the worker ran)."""
        if self.out is None:
            raise HarnessError(f"torch {self.release}: the worker has not run")
        return self.out / name


def request(project: Project, inspections: list[Any], out: Path) -> dict[str, Any]:
    """The workers' request: each file as ``check``'s worker takes it (its loader chosen here), plus whether the
    project trusts it (only then is ``weights_only=False`` tried)."""
    from harness.checkfile import request_item

    files = [{**request_item(i), "trusted": Path(i.path) in project.trusted} for i in inspections]
    return {"root": str(project.root), "sys_path": [str(p) for p in project.python_path], "imports": project.imports,
            "files": files, "models": project.models, "memory_mb": project.memory_mb,
            "trainings": [{**t, "steps": t["steps"]} for t in project.trainings], "out": str(out)}


def run_side(side: Side, body: dict[str, Any], folder: Path, timeout: float = 900.0) -> Side:
    """Run the worker for ``side`` in ``folder/<release>`` (its cwd: private, never the project)."""
    out = side.out = folder / side.release
    out.mkdir(parents=True, exist_ok=True)
    path = out / "request.json"
    path.write_text(json.dumps({**body, "out": str(out)}))
    started = time.perf_counter()
    try:
        done = subprocess.run(launch.command(side.python, WORKER, path), capture_output=True, text=True, cwd=out,
                              env=launch.environment(), timeout=timeout)
        stderr = done.stderr
    except subprocess.TimeoutExpired:
        stderr = f"stopped after its {timeout:g} s budget (config `timeout_s`)"
    side.seconds = time.perf_counter() - started
    answers = out / "answers.json"
    if not answers.exists():
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"torch {side.release}: the upgrade worker ({side.python}) did not finish: {tail}")
    side.answers = json.loads(answers.read_text())
    return side


def run(project: Project, inspections: list[Any], sides: list[Side], folder: Path) -> list[Side]:
    body = request(project, inspections, folder)
    with ThreadPoolExecutor(max_workers=len(sides)) as pool:
        return list(pool.map(lambda s: run_side(s, body, folder, project.timeout_s), sides))


def config_errors(side: Side) -> list[str]:
    """The project's config problems seen in ``side`` (a missing factory, one that raises, a missing key)."""
    sections = [side.answers.get(k, {}) for k in ("imports", "models", "trainings")]
    return [answer["error"] for section in sections for answer in section.values()
            if answer.get("status") == "config_error"]


# -- comparing --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stored:
    """One tensor a worker wrote for comparison (see :func:`harness.upgrade.worker.save_tensors`)."""

    meta: str
    bits: Any
    values: Any


def _tensors(path: Path) -> Optional[dict[str, Stored]]:
    """A worker's ``.npz`` of tensors (read with numpy: the caller never imports torch), or None."""
    import numpy

    if not path.exists():
        return None
    with numpy.load(path, allow_pickle=False) as data:
        names = [key.split("/", 1)[1] for key in data.files if key.startswith("meta/")]
        return {n: Stored(str(data[f"meta/{n}"]), data[f"bits/{n}"], data[f"values/{n}"]) for n in names}


def compare_tensors(a: dict[str, Stored], b: dict[str, Stored]) -> dict[str, Any]:
    """Bit-exact or not, and the max abs difference per name (worker-written files from this run)."""
    import numpy

    diffs: dict[str, float] = {}
    exact = set(a) == set(b)
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if x.meta != y.meta:
            exact, diffs[key] = False, float("inf")
            continue
        same = bool(numpy.array_equal(x.bits, y.bits))
        exact = exact and same
        diffs[key] = 0.0 if same or not x.values.size else float(numpy.nan_to_num(
            numpy.abs(x.values - y.values), nan=numpy.inf).max())
    return {"bitexact": exact, "max_abs_diff": diffs, "only_in_one": sorted(set(a) ^ set(b))}


def outputs(name: str, a: Side, b: Side) -> dict[str, Any]:
    left, right = (_tensors(s.file(f"model-{name}-outputs.npz")) for s in (a, b))
    if left is None or right is None:
        missing = [s.release for s, t in ((a, left), (b, right)) if t is None]
        return {"status": "not tried", "why": f"no forward ran in torch {', '.join(missing)}"}
    found = compare_tensors(left, right)
    worst = max(found["max_abs_diff"].values(), default=0.0)
    return {"status": "bit-identical" if found["bitexact"] else "differs", "max_abs_diff": worst, **found}


def resume(name: str, a: Side, b: Side, tolerance: float) -> dict[str, Any]:
    left, right = (_tensors(s.file(f"training-{name}-params.npz")) for s in (a, b))
    draws = [_tensors(s.file(f"training-{name}-rng.npz")) for s in (a, b)]
    if left is None or right is None or draws[0] is None or draws[1] is None:
        missing = [s.release for s, t in ((a, left), (b, right)) if t is None]
        return {"status": "not tried", "why": f"the steps did not run in torch {', '.join(missing)}"}
    params = compare_tensors(left, right)
    owner = a.answers.get("trainings", {}).get(name, {}).get("groups", {})
    groups: dict[str, float] = {}
    for param, diff in params["max_abs_diff"].items():
        group = f"group {owner.get(param, '?')}"
        groups[group] = max(groups.get(group, 0.0), diff)
    rng = compare_tensors(draws[0], draws[1])
    worst = max(groups.values(), default=0.0)
    within = params["bitexact"] or worst <= tolerance
    differing = sum(1 for d in params["max_abs_diff"].values() if d)
    return {"status": "bit-exact" if params["bitexact"] else "within tolerance" if within else "differs",
            "bitexact": params["bitexact"], "within_tolerance": within, "tolerance": tolerance,
            "max_abs_diff_per_group": groups, "params_differing": differing, "params": len(params["max_abs_diff"]),
            "rng_streams": {k: "same" if d == 0.0 else f"differ (max {d:.3g})" for k, d in rng["max_abs_diff"].items()},
            "rng_same": rng["bitexact"]}


def elapsed(since: float) -> float:
    return round(time.perf_counter() - since, 1)


def workspace(keep: Optional[Path]) -> Callable[[], Any]:
    """A folder for the workers' files: ``keep`` when given, else a temporary one."""
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        return lambda: _Kept(keep)
    return lambda: tempfile.TemporaryDirectory(prefix="ckpt-upgrade-")


class _Kept:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        return None
