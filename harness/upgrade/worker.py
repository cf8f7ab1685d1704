"""Everything ``ckpt-harness upgrade`` does inside one release: ``python worker.py REQUEST.json``.

Run with the release's interpreter as ``python -I`` from a private temporary folder (see
:func:`harness.upgrade.run.run_side`), so it needs only the standard library, torch and the user's
own code, imported from the import roots the project config names (``python_path``; naming a factory
is the user's consent to run it) and from nowhere else: not the current directory, not
``PYTHONPATH``, not a ``sitecustomize`` lying in the project. Checkpoints are loaded
``weights_only=True`` — with an allowlist only after :mod:`harness.checkfile.safeglobals` found and
ran one — and with ``weights_only=False`` only where the config marks the file trusted. Each answer
is written to the request's ``out`` JSON; tensors to compare across releases (outputs, resumed
parameters, RNG draws) go to ``.pt`` files beside it.

A problem with the config itself (a factory that does not exist or raises, a missing key) is
reported as ``config_error``: in the release the user is on, the caller turns it into exit 2; in the
target release the same failure is a finding.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import platform
import sys
import sysconfig
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
CHECK_WORKER = HERE.parent / "checkfile" / "worker.py"
PREFIXES = ("module.", "_orig_mod.")


def by_path(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ConfigError(Exception):
    """The project config names something that is not there, or a factory it names raised."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def factory(reference: str, what: str) -> Callable[..., Any]:
    """``module:attribute`` from the user's project (their config names it)."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{what} {reference!r}: module {module_name!r} does not import ({one_line(exc)})") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"{what} {reference!r}: {module_name} has no attribute {attribute!r}")
    return getattr(module, attribute)


def call(reference: str, what: str, *args: Any) -> Any:
    function = factory(reference, what)
    try:
        return function(*args)
    except Exception as exc:
        raise ConfigError(f"{what} {reference!r} raised {one_line(exc)}") from None


class Loader:
    """Load the project's files the way their verdict says works here, keeping the code that did."""

    def __init__(self, check: Any, compat: Any, files: dict[str, dict[str, Any]]) -> None:
        self.check, self.compat, self.files = check, compat, files
        self.results: dict[str, dict[str, Any]] = {}

    def verdict(self, path: str) -> dict[str, Any]:
        if path not in self.results:
            item = self.files[path]
            self.results[path] = self.check.check_file(item, self.compat, item["trusted"])
        return self.results[path]

    def obtain(self, path: str) -> tuple[Any, str]:
        """(the loaded object, the code that loaded it); ConfigError when no permitted load works here."""
        import torch

        if path not in self.files:
            raise ConfigError(f"{path} is not one of the project's checkpoints (config `checkpoints`)")
        result = self.verdict(path)
        loads = result["loads"]
        fix = result.get("verified_fix") or {}
        location = result.get("map_location")
        extra = f", map_location={location!r}" if location else ""
        if loads.get("weights_only", {}).get("status") == "pass":
            code = f"checkpoint = torch.load({path!r}, weights_only=True{extra})"
            return torch.load(path, weights_only=True, map_location=location), code
        if fix.get("status") == "loads":
            scope: dict[str, Any] = {}
            exec(compile(fix["code"], "<verified fix>", "exec"), scope)
            return scope["checkpoint"], fix["code"]
        if self.files[path]["trusted"] and loads.get("unsafe", {}).get("status") == "pass":
            code = f"checkpoint = torch.load({path!r}, weights_only=False{extra})  # trusted in the project config"
            return torch.load(path, weights_only=False, map_location=location), code
        raise LoadRefused(f"{path} does not load here with any load the config permits")


class LoadRefused(Exception):
    """The file does not load in this release (its own verdict says why): the answer is 'not tried'."""


def state_of(checkpoint: Any, key: str, path: str) -> Any:
    if not key:
        return checkpoint
    if not isinstance(checkpoint, dict) or key not in checkpoint:
        keys = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ConfigError(f"{path} has no key {key!r} (it has: {keys}); set `key` to one of them")
    return checkpoint[key]


def strip_code(state: dict[str, Any], model: Any) -> str:
    """Code that strips a wrapper prefix the model does not have ('' when none is needed)."""
    own = set(model.state_dict())
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            return (f"state_dict = {{k[len({prefix!r}):] if k.startswith({prefix!r}) else k: v "
                    f"for k, v in state_dict.items()}}")
    return ""


def plan(state: dict[str, Any], model: Any) -> dict[str, Any]:
    own = model.state_dict()
    mismatched = {k: [list(v.shape), list(own[k].shape)] for k, v in state.items()
                  if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)}
    return {"missing": sorted(set(own) - set(state)), "unexpected": sorted(set(state) - set(own)),
            "mismatched": mismatched}


def load_into(model: Any, state: Any, strict_if_clean: bool = True) -> dict[str, Any]:
    """Load ``state`` into ``model`` with the smallest fix that works; the fix is code, run here."""
    import torch

    code = [strip_code(state, model)]
    scope: dict[str, Any] = {"torch": torch, "model": model, "state_dict": dict(state)}
    if code[0]:
        exec(code[0], scope)
    found = plan(scope["state_dict"], model)
    if found["mismatched"]:
        code.append("own = model.state_dict()\nstate_dict = {k: v for k, v in state_dict.items() "
                    "if k not in own or own[k].shape == v.shape}")
    clean = not (found["missing"] or found["unexpected"] or found["mismatched"])
    code.append(f"result = model.load_state_dict(state_dict, strict={clean and strict_if_clean})")
    snippet = "\n".join(c for c in code if c)
    exec(snippet, scope)
    loaded = {k: v for k, v in scope["state_dict"].items() if k in model.state_dict()}
    own = model.state_dict()
    same = all(torch.equal(own[k], v) for k, v in loaded.items() if hasattr(v, "shape"))
    return {**found, "code": snippet, "ran": True, "values_equal": same, "loaded": len(loaded),
            "needs_fix": bool(code[0]) or not clean}


def to_batch(batch: Any) -> tuple[tuple, dict]:
    if isinstance(batch, dict):
        return (), batch
    if isinstance(batch, (tuple, list)):
        return tuple(batch), {}
    return (batch,), {}


def flat_tensors(value: Any, prefix: str = "out") -> dict[str, Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return {prefix: value.detach().cpu()}
    if isinstance(value, dict):
        return {k: t for key, item in value.items() for k, t in flat_tensors(item, f"{prefix}.{key}").items()}
    if isinstance(value, (tuple, list)):
        return {k: t for i, item in enumerate(value) for k, t in flat_tensors(item, f"{prefix}.{i}").items()}
    return {}


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """Tensors to compare across releases, as numpy arrays the caller reads without importing torch.

    Per name: ``bits/NAME`` (the raw bytes: equal bits is bit-exact), ``values/NAME`` (float64, or
    complex128, for the size of a difference) and ``meta/NAME`` (``"dtype shape"``).
    """
    import numpy
    import torch

    arrays: dict[str, Any] = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        arrays[f"bits/{name}"] = flat.view(torch.uint8).numpy() if flat.numel() else numpy.zeros(0, numpy.uint8)
        arrays[f"values/{name}"] = (flat.to(torch.complex128) if flat.is_complex() else flat.double()).numpy()
        arrays[f"meta/{name}"] = numpy.array(f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}")
    with open(path, "wb") as stream:
        numpy.savez(stream, **arrays)


def run_model(spec: dict[str, Any], loader: Loader, out: Path) -> dict[str, Any]:
    import torch

    answer: dict[str, Any] = {}
    checkpoint, load_code = loader.obtain(spec["checkpoint"])
    state = state_of(checkpoint, spec.get("key", ""), spec["checkpoint"])
    model = call(spec["factory"], "factory", *spec.get("factory_args", []))
    answer["old_code"] = load_into(model, state)
    answer["load_code"] = load_code
    torch.manual_seed(0)
    args, kwargs = to_batch(call(spec["batch"], "batch factory"))
    model.eval()
    with torch.no_grad():
        outputs = flat_tensors(model(*args, **kwargs))
    save_tensors(outputs, out / f"model-{spec['name']}-outputs.npz")
    answer["outputs"] = sorted(outputs)
    if spec.get("new_factory"):
        new_model = call(spec["new_factory"], "new_factory")
        answer["partial"] = load_into(new_model, state, strict_if_clean=True)
    return answer


def rng_draws(checkpoint: Any, keys: dict[str, str]) -> dict[str, Any]:
    """Draws from the restored RNG streams: a randn, a dropout mask and numpy's next floats."""
    import numpy
    import torch

    if keys.get("torch_rng") and keys["torch_rng"] in checkpoint:
        torch.set_rng_state(checkpoint[keys["torch_rng"]])
    else:
        torch.manual_seed(0)
    draws = {"torch.randn": torch.randn(64),
             "dropout mask": torch.nn.functional.dropout(torch.ones(256), 0.5, training=True)}
    if keys.get("numpy_rng") and keys["numpy_rng"] in checkpoint:
        numpy.random.set_state(checkpoint[keys["numpy_rng"]])
        draws["numpy.random.rand"] = torch.from_numpy(numpy.random.rand(16))
    return draws


def run_training(spec: dict[str, Any], loader: Loader, out: Path) -> dict[str, Any]:
    import torch

    keys = {"model": "model", "optimizer": "optimizer", "scheduler": "scheduler", **spec.get("keys", {})}
    checkpoint, load_code = loader.obtain(spec["checkpoint"])
    for role in ("model", "optimizer") + (("scheduler",) if spec.get("scheduler") else ()):
        state_of(checkpoint, keys[role], spec["checkpoint"])
    model = call(spec["model"], "model factory")
    fixed = load_into(model, checkpoint[keys["model"]])
    optimizer = call(spec["optimizer"], "optimizer factory", model)
    optimizer.load_state_dict(checkpoint[keys["optimizer"]])
    scheduler = call(spec["scheduler"], "scheduler factory", optimizer) if spec.get("scheduler") else None
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint[keys["scheduler"]])
    draws = rng_draws(checkpoint, keys)
    rng_draws(checkpoint, keys)  # restore again: the steps start from the saved streams, not after the draws
    loss_fn = factory(spec["loss"], "loss") if spec.get("loss") else None
    model.train()
    losses = []
    for step in range(int(spec.get("steps", 3))):
        torch.manual_seed(1000 + step)
        args, kwargs = to_batch(call(spec["batch"], "batch factory"))
        optimizer.zero_grad()
        output = model(*args, **kwargs)
        loss = (loss_fn(output, *args) if loss_fn
                else sum(t.float().pow(2).mean() for t in flat_tensors(output).values()))
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(p)]: i for i, g in enumerate(optimizer.param_groups) for p in g["params"] if id(p) in names}
    save_tensors(dict(model.named_parameters()), out / f"training-{spec['name']}-params.npz")
    save_tensors(draws, out / f"training-{spec['name']}-rng.npz")
    return {"load_code": load_code, "model_load": fixed, "losses": losses, "steps": len(losses),
            "lr": [g["lr"] for g in optimizer.param_groups], "groups": groups}


def guarded(what: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {"status": "ok", **what()}
    except ConfigError as exc:
        return {"status": "config_error", "error": str(exc)}
    except LoadRefused as exc:
        return {"status": "not_tried", "error": str(exc)}
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return {"status": "error", "error": f"{one_line(exc)} (at {Path(frame.filename).name}:{frame.lineno})"}


def import_roots(path: list[str], roots: list[str]) -> list[str]:
    """``path`` (``sys.path``) with the project's import ``roots`` placed after the standard library.

    The worker runs as ``python -I`` from a private folder: neither the current directory nor
    ``PYTHONPATH`` is on ``sys.path``. The roots the config names go before site-packages (the
    project's own code wins over an installed copy of it) but after the standard library, so a
    project file named like a stdlib module (``inspect.py``, ``glob.py``) is never imported.
    """
    stdlib = {str(Path(p).resolve()) for p in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])}

    def is_stdlib(entry: str) -> bool:
        resolved = Path(entry).resolve()
        return entry.endswith(".zip") or any(str(resolved) == s or str(resolved).startswith(s + os.sep)
                                             and "site-packages" not in resolved.parts for s in stdlib)

    position = next((i for i, entry in enumerate(path) if entry and not is_stdlib(entry)), len(path))
    added = [r for r in roots if r not in path]
    return [*path[:position], *added, *path[position:]]


def import_module(name: str) -> dict[str, Any]:
    importlib.import_module(name)
    return {}


def file_verdict(loader: Loader, path: str) -> dict[str, Any]:
    return {"result": loader.verdict(path)}


class Clock:
    """Seconds per phase (wall and this process's CPU), reported with the answers."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self.mark = (time.perf_counter(), time.process_time())

    def lap(self, phase: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.phases[phase] = {"wall_s": round(now[0] - self.mark[0], 2), "cpu_s": round(now[1] - self.mark[1], 2)}
        self.mark = now


def main(request_path: str) -> int:
    clock = Clock()
    request = json.loads(Path(request_path).read_text())
    sys.path[:] = import_roots(sys.path, request["sys_path"])
    check = by_path(CHECK_WORKER, "_ckpt_check_worker")
    compat = check.load_compat()
    import torch

    check.limit_memory(int(request.get("memory_mb", 0)))
    out = Path(request["out"])
    allowlist = compat.weights_only_allowlist()
    answers: dict[str, Any] = {"environment": {"torch": torch.__version__, "python": platform.python_version(),
                                               "executable": sys.executable,
                                               "allowlist": None if allowlist is None else sorted(allowlist)},
                               "imports": {}}
    clock.lap("import torch")
    for name in request.get("imports", []):
        answers["imports"][name] = guarded(functools.partial(import_module, name))
    clock.lap("imports")
    loader = Loader(check, compat, {f["path"]: f for f in request["files"]})
    answers["files"] = {path: guarded(functools.partial(file_verdict, loader, path)) for path in loader.files}
    clock.lap("files")
    answers["models"] = {m["name"]: guarded(functools.partial(run_model, m, loader, out))
                         for m in request.get("models", [])}
    clock.lap("models")
    answers["trainings"] = {t["name"]: guarded(functools.partial(run_training, t, loader, out))
                            for t in request.get("trainings", [])}
    clock.lap("trainings")
    answers["timings"] = clock.phases
    (out / "answers.json").write_text(json.dumps(answers, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
