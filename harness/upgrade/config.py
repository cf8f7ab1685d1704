"""The user's project description: ``[tool.ckpt-harness]`` in pyproject.toml, or a ``ckpt-harness.toml``.

Every problem is one :class:`~harness.errors.HarnessError` line naming the key to change. Naming a
factory here is the user's consent for ``upgrade`` to import and run it; checkpoints are still loaded
``weights_only`` unless listed under ``trusted``.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import sys
from pathlib import Path
from typing import Any, Optional

from harness.errors import HarnessError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PROJECT_KEYS = {"checkpoints", "trusted", "imports", "python_path", "steps", "resume_tolerance", "requirements",
                "models", "training", "timeout_s", "memory_mb"}
MODEL_KEYS = {"name", "factory", "checkpoint", "key", "new_factory", "batch"}
TRAINING_KEYS = {"name", "checkpoint", "model", "optimizer", "scheduler", "batch", "loss", "keys", "steps"}


@dataclasses.dataclass
class Project:
    """What ``upgrade`` checks, resolved against the project root."""

    root: Path
    source: Path
    checkpoints: list[Path]
    trusted: set[Path]
    imports: list[str]
    python_path: list[Path]
    steps: int
    resume_tolerance: float
    requirements: dict[str, list[str]]
    models: list[dict[str, Any]]
    trainings: list[dict[str, Any]]
    #: wall-clock seconds one release's worker may run before it is stopped
    timeout_s: float = 900.0
    #: address space the worker may add after importing torch (RLIMIT_AS); 0: no cap
    memory_mb: int = 16384


def find(root: Path, config: Optional[Path]) -> tuple[Path, dict[str, Any]]:
    """The config file and its ``[tool.ckpt-harness]`` table."""
    candidates = [config] if config else [root / "ckpt-harness.toml", root / "pyproject.toml"]
    for path in candidates:
        if path is None or not path.is_file():
            continue
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise HarnessError(f"{path} does not parse: {exc}") from None
        table = document.get("tool", {}).get("ckpt-harness") if path.name == "pyproject.toml" else \
            document.get("tool", {}).get("ckpt-harness", document)
        if table:
            return path, table
    if config:
        raise HarnessError(f"no such config file: {config}")
    raise HarnessError(f"no [tool.ckpt-harness] in {root / 'pyproject.toml'} and no {root / 'ckpt-harness.toml'}: "
                       f"describe the project's checkpoints and models there (see README, 'Upgrading torch')")


def _reference(where: str, key: str, value: Any, required: bool = True) -> Optional[str]:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not REFERENCE.match(value):
        raise HarnessError(f"{where}: {key} must be 'module:function' (got {value!r})")
    return value


def _file(root: Path, where: str, key: str, value: Any, files: list[Path]) -> str:
    if not isinstance(value, str):
        raise HarnessError(f"{where}: {key} must be a path relative to {root}")
    path = (root / value).resolve()
    if path not in files:
        raise HarnessError(f"{where}: {key} = {value!r} is not one of the files the `checkpoints` globs found")
    return str(path)


def _unknown(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def load(root: Path, config: Optional[Path] = None) -> Project:
    """Parse and validate the project's config."""
    root = root.resolve()
    source, table = find(root, config)
    where = f"{source} [tool.ckpt-harness]"
    _unknown(where, table, PROJECT_KEYS)
    patterns = table.get("checkpoints") or []
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise HarnessError(f"{where}: checkpoints must be a list of globs (e.g. [\"checkpoints/*.pt\"])")
    files = sorted({Path(f).resolve() for p in patterns for f in glob.glob(str(root / p), recursive=True)
                    if Path(f).is_file()})
    if not files:
        raise HarnessError(f"{where}: the checkpoints globs {patterns} match no file under {root}")
    trusted = {Path(f).resolve() for p in table.get("trusted", []) for f in glob.glob(str(root / p))}
    models = []
    for n, model in enumerate(table.get("models", [])):
        mwhere = f"{where} models[{n}]"
        _unknown(mwhere, model, MODEL_KEYS)
        if not model.get("name"):
            raise HarnessError(f"{mwhere}: needs a name")
        models.append({"name": model["name"], "factory": _reference(mwhere, "factory", model.get("factory")),
                       "new_factory": _reference(mwhere, "new_factory", model.get("new_factory"), required=False),
                       "batch": _reference(mwhere, "batch", model.get("batch")),
                       "checkpoint": _file(root, mwhere, "checkpoint", model.get("checkpoint"), files),
                       "key": str(model.get("key", ""))})
    trainings = []
    for n, training in enumerate(table.get("training", [])):
        twhere = f"{where} training[{n}]"
        _unknown(twhere, training, TRAINING_KEYS)
        if not training.get("name"):
            raise HarnessError(f"{twhere}: needs a name")
        trainings.append({"name": training["name"],
                          **{k: _reference(twhere, k, training.get(k)) for k in ("model", "optimizer", "batch")},
                          **{k: _reference(twhere, k, training.get(k), required=False) for k in ("scheduler", "loss")},
                          "checkpoint": _file(root, twhere, "checkpoint", training.get("checkpoint"), files),
                          "keys": dict(training.get("keys", {})),
                          "steps": int(training.get("steps", table.get("steps", 3)))})
    names = [m["name"] for m in models] + [t["name"] for t in trainings]
    if len(set(names)) != len(names):
        raise HarnessError(f"{where}: model and training names must be unique (got {names})")
    tolerance = table.get("resume_tolerance", 0.0)
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise HarnessError(f"{where}: resume_tolerance must be a number >= 0")
    requirements = table.get("requirements", {})
    if not isinstance(requirements, dict):
        raise HarnessError(f"{where}: requirements must be a table release = [\"package==x\", ...]")
    limits = {key: table.get(key, default) for key, default in (("timeout_s", 900.0), ("memory_mb", 16384))}
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (key == "timeout_s"
                                                                                             and value == 0):
            raise HarnessError(f"{where}: {key} must be a number {'> 0' if key == 'timeout_s' else '>= 0 (0: no cap)'}")
    return Project(root, source, files, trusted, [str(i) for i in table.get("imports", [])],
                   [(root / p).resolve() for p in table.get("python_path", ["."])], int(table.get("steps", 3)),
                   float(tolerance), {str(k): list(v) for k, v in requirements.items()}, models, trainings,
                   float(limits["timeout_s"]), int(limits["memory_mb"]))
