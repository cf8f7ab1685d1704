"""Produce: save every case in every format this torch supports, then write the manifest.

Work happens in a hidden staging folder next to the target; the manifest is written last
(atomically) and the folder is renamed into place, so a consumer never sees a half-written
environment. How staging folders are placed, merged, swapped and cleaned is
:mod:`harness.placement`: concurrent runs with different cases both land, an existing
environment folder is replaced only when asked and only when the harness made it.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from harness import containers, placement, produce_pool, trust
from harness import env as envmod
from harness.case import CASES, Case, Prepared, clone_prepared, forward_outputs, prepare, train_step
from harness.errors import HarnessError
from harness.fingerprint import collect_metadata, describe_tensor, fingerprint, module_modes, optimizer_fingerprint
from harness.formats import FORMATS, CannotSave, Format
from harness.manifest import MANIFEST_NAME, SCHEMA, write_atomic
from harness.records import describe_exception, one_line

Progress = Callable[[str], None]


def select(registry: Any, names: Optional[Iterable[str]]) -> list[Any]:
    """Entries of ``registry`` named in ``names`` (all when None); unknown names raise early."""
    if not names:
        return list(registry)
    return [registry.get(name) for name in names]


def produce(out: Path, cases: Optional[Iterable[str]] = None, formats: Optional[Iterable[str]] = None,
            device: str = "cpu", replace: bool = False, progress: Optional[Progress] = None, *,
            jobs: int = 1, plugins: Sequence[str] = ()) -> Path:
    """Write ``out/<env-id>/`` for the running interpreter and return that folder.

    Without ``replace`` the cases are added to an existing environment folder that lacks them
    (so concurrent runs with different ``--case`` both land); a case it already holds is refused.
    With ``replace`` the folder is swapped whole, and only when the harness made it.

    With ``jobs`` > 1 the cases are produced by that many worker processes (:mod:`harness.produce_pool`),
    which import the ``plugins`` modules again and look the cases up by name; the manifest is a serial
    run's but for the save timings. ``progress`` is called with each case's name: before the case in a
    serial run, as its results arrive (in case order) in a parallel one.
    """
    chosen_cases, chosen_formats = select(CASES, _once(cases)), select(FORMATS, _once(formats))
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise HarnessError(f"device {device!r} is not available here; use --device cpu")
    if jobs > 1 and len(chosen_cases) > 1:
        produce_pool.start_server()  # torch imports in the workers' server while this process looks around
    env = envmod.describe(device)
    target = Path(out) / envmod.env_id(env)
    names = [case.name for case in chosen_cases]
    _check_target(target, names, replace)  # early, so a refused run builds nothing
    jobs = max(1, min(jobs, len(chosen_cases)))
    staging = placement.new_staging(target)
    try:
        manifest = _new_manifest(env, target.name)
        _produce_cases(chosen_cases, chosen_formats, staging, manifest, device, jobs, plugins, progress)
        write_atomic(staging / MANIFEST_NAME, manifest)
        with placement.env_lock(target):  # again under the lock: another run may have landed meanwhile
            _check_target(target, names, replace)
            if target.exists() and not replace:
                sealed = trust.verify(target)  # only what this user's produce sealed keeps its trust
                fresh = trust.files_under(staging, skip=(placement.STAGING_MARKER,)) + [placement.MARKER]
                placement.merge_into(staging, target, names, write_atomic)
                trust.seal(target, sealed, fresh)
            else:
                placement.swap_into_place(staging, target)
                trust.seal(target)  # this user's key signs every file: consume trusts them without --trust
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _once(names: Optional[Iterable[str]]) -> Optional[list[str]]:
    """``names`` without repeats (a case named twice is produced once: two writers of one file would race)."""
    return None if names is None else list(dict.fromkeys(names))


def _produce_cases(cases: list[Case], formats: list[Format], staging: Path, manifest: dict, device: str, jobs: int,
                   plugins: Sequence[str], progress: Optional[Progress]) -> None:
    """Every case's section and entries into ``manifest``, in case order: here, or in ``jobs`` workers."""
    if jobs == 1:
        for case in cases:
            if progress:
                progress(case.name)
            _produce_case(case, formats, staging, manifest, device)
        return
    names = [case.name for case in cases]
    parts = produce_pool.run(names, [fmt.name for fmt in formats], staging, device, jobs, plugins,
                             lambda i: progress(names[i]) if progress else None)
    with contextlib.closing(parts):  # the workers stop before the staging folder goes, whatever happens
        for part in parts:
            manifest["cases"].update(part["cases"])
            manifest["entries"].extend(part["entries"])


def _check_target(target: Path, cases: list[str], replace: bool) -> None:
    """Refuse a target that is not ours to write, or (without ``replace``) one holding these cases already."""
    placement.check_ours(target, must_exist=False)
    if target.exists() and not replace:
        held = placement.cases_held(target)
        overlap = [name for name in cases if name in held]
        if overlap:
            raise HarnessError(f"{target} already holds case(s) {', '.join(overlap)}; pass --replace to overwrite "
                               "it or choose another --out")


def _new_manifest(env: dict[str, Any], eid: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "env": env, "env_id": eid, "cases": {}, "entries": [],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _produce_case(case: Case, formats: list[Format], root: Path, manifest: dict, device: str) -> None:
    applicable = [fmt for fmt in formats if fmt.applicable(case)]
    missing = case.missing_requirement()
    if missing:
        manifest["cases"][case.name] = {"exercises": case.exercises, "skip": missing}
        manifest["entries"].extend(_skip_entry(case, fmt, missing) for fmt in applicable)
        return
    try:
        prepared = prepare(case, device=device)
        resumes = any("optimizer" in fmt.holds for fmt in applicable)
        next_state = _next_step_state(prepared) if resumes else None
        manifest["cases"][case.name] = _case_section(prepared, root, next_state)
    except Exception as exc:  # a case that cannot be built is a finding, not a crash of produce
        detail = f"building case {case.name} failed: {describe_exception(exc)}"
        manifest["cases"][case.name] = {"exercises": case.exercises, "error": detail}
        manifest["entries"].extend({**_skip_entry(case, fmt, detail), "status": "error"} for fmt in applicable)
        return
    next_step = fingerprint(next_state)["tensors"] if next_state else None
    for fmt in applicable:
        manifest["entries"].append(_produce_entry(prepared, fmt, root, next_step))


def _skip_entry(case: Case, fmt: Format, reason: str) -> dict[str, Any]:
    return {"case": case.name, "format": fmt.name, "status": "skip", "detail": reason}


#: largest next-step state stored for cross-environment resume comparisons
MAX_STORED_NEXT_STEP_BYTES = 64 * 1024 * 1024


def _case_section(prepared: Prepared, root: Path, next_state: Optional[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Per case: what it exercises, its fixed inputs and forward outputs (hashes plus a tensor file),
    and the state after one more training step where it is small enough to store."""
    outputs = forward_outputs(prepared.models, prepared.inputs)
    relative = Path("outputs") / f"{prepared.case.name}.pt"
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    stored: dict[str, Any] = {
        "inputs": {name: tuple(x.cpu() for x in args) for name, args in prepared.inputs.items()},
        "outputs": outputs,
    }
    if next_state and sum(t.numel() * t.element_size() for t in next_state.values()) <= MAX_STORED_NEXT_STEP_BYTES:
        stored["next_step"] = {name: t.detach().cpu() for name, t in next_state.items()}
    torch.save(stored, root / relative)
    return {
        "exercises": prepared.case.exercises,
        "steps": prepared.steps,
        "atol": prepared.case.atol,
        "resume_atol": prepared.case.resume_atol,
        "outputs_file": str(relative),
        "outputs": {path: describe_tensor(t) for path, t in outputs.items()},
    }


def _next_step_state(prepared: Prepared) -> dict[str, torch.Tensor]:
    """``{model.param: tensor}`` after one more uninterrupted step (what a resume must reproduce)."""
    clone = clone_prepared(prepared)
    torch.set_rng_state(prepared.rng_state)
    train_step(clone.models, clone.optimizers, clone.schedulers, clone.inputs)
    return {f"{name}.{key}": value for name, model in clone.models.items()
            for key, value in model.state_dict().items()}


def _remove(path: Path) -> None:
    """Remove a half-written artifact: a file, or a folder for folder formats."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _produce_entry(prepared: Prepared, fmt: Format, root: Path, next_step: Optional[dict]) -> dict[str, Any]:
    entry: dict[str, Any] = {"case": prepared.case.name, "format": fmt.name}
    reason = fmt.unavailable()
    if reason:
        return {**entry, "status": "skip", "detail": reason}
    relative = Path(prepared.case.name) / f"{fmt.name}{fmt.suffix}"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            payload = fmt.payload(prepared)
            started = time.perf_counter()
            fmt.save(payload, path)
            save_seconds = time.perf_counter() - started
        contents = fmt.contents(payload)
        entry.update(
            status="ok",
            file=str(relative),
            file_bytes=containers.artifact_bytes(path),
            file_hash=containers.artifact_hash(path),
            stored_tensor_bytes=fmt.stored_tensor_bytes(path),
            save_seconds=round(save_seconds, 6),
            fingerprint=fingerprint(contents),
            metadata=collect_metadata(contents),
            modes=module_modes(payload),
            save_warnings=sorted({f"{w.category.__name__}: {one_line(str(w.message))}" for w in caught}),
        )
        if fmt.own_program:
            outputs = forward_outputs(fmt.modules(payload, prepared.case), prepared.inputs)
            entry["outputs"] = {name: describe_tensor(t) for name, t in outputs.items()}
    except CannotSave as exc:
        _remove(path)
        return {**entry, "status": "skip", "detail": f"cannot be saved in this format here: {one_line(str(exc))}"}
    except Exception as exc:  # a save that raises is a finding for this entry, not a crash of produce
        _remove(path)
        return {**entry, "status": "error", "detail": f"save failed: {describe_exception(exc)}"}
    if "optimizer" in fmt.holds:
        entry["optimizer"] = {name: optimizer_fingerprint(opt.state_dict())
                              for name, opt in prepared.optimizers.items()}
        entry["next_step"] = next_step
    return entry

