"""One resumed training step, shared by the ``resume`` and ``optimizer_device`` checks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from harness.case import make_optimizers, train_step
from harness.checks import Context, Outcome, failed, passed, skipped
from harness.checks._compare import fingerprint_differences, max_abs_difference, summarize
from harness.fingerprint import fingerprint
from harness.formats import Resumable


def restore(ctx: Context, state: Resumable, device: str = "cpu") -> tuple[dict[str, nn.Module], dict, dict]:
    """Fresh models on ``device`` with optimizers and schedulers restored from ``state``."""
    case = ctx.case
    if case is None:  # the checks that resume declare needs_case: consume never gets here without it
        raise RuntimeError(f"resuming needs the case's code: {ctx.case_missing}")
    models = case.fresh_models()
    for name, model in models.items():
        model.to(device)
        model.load_state_dict(state.model_states[name])
    optimizers, schedulers = make_optimizers(case, models)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state.optimizer_states[name])
    for name, scheduler_state in state.scheduler_states.items():
        schedulers[name].load_state_dict(scheduler_state)
    return models, optimizers, schedulers


def resume_one_step(ctx: Context, state: Resumable, device: str = "cpu") -> dict[str, nn.Module]:
    """Fresh models and optimizers restored from ``state`` on ``device``, then one training step on the
    producer's stored inputs, with the checkpoint's RNG state where it holds one."""
    models, optimizers, schedulers = restore(ctx, state, device)
    if state.rng_state is not None:
        torch.set_rng_state(state.rng_state.cpu())
    inputs = {n: tuple(x.to(device) for x in args) for n, args in ctx.stored["inputs"].items()}
    train_step(models, optimizers, schedulers, inputs)
    return models


def has_dropout(models: dict[str, nn.Module]) -> bool:
    """True when a model draws random dropout masks in training mode (its step depends on the RNG)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
               for net in models.values() for m in net.modules())


def steps_off_cpu(optimizers: dict) -> list[str]:
    """Devices of optimizer ``step`` tensors that are not on the CPU (pytorch#80809)."""
    return sorted({str(s["step"].device) for o in optimizers.values() for s in o.state.values()
                   if isinstance(s.get("step"), torch.Tensor) and s["step"].device.type != "cpu"})


def training_state(ctx: Context, loaded: Any) -> Resumable:
    """The format's training state of a deep copy of ``loaded`` (Optimizer.load_state_dict shares the
    loaded tensors and step() updates them in place)."""
    state = ctx.fmt.resumable(copy.deepcopy(loaded))
    if state is None:
        raise RuntimeError(f"{ctx.fmt.name} holds optimizer state but gave no training state to resume from")
    return state


def judge(ctx: Context, loaded: Any) -> Outcome:
    """The resume verdict for ``loaded``: bitwise in the same environment, else within ``resume_atol``;
    a skip with the reason when the producer left nothing to compare with."""
    if ctx.same_numerics and not ctx.entry.get("next_step"):
        return skipped("the manifest records no next-step fingerprint for this artifact: nothing to compare")
    reference = None if ctx.same_numerics else ctx.stored.get("next_step")
    if not ctx.same_numerics and not reference:
        return skipped("across environments the resume is compared with the producer's stored next-step state, "
                       "and it stored none (too large): nothing to compare")
    state = training_state(ctx, loaded)
    if state.rng_state is None and ctx.case is not None and has_dropout(ctx.case.fresh_models()):
        return skipped("the checkpoint keeps no RNG state and the model draws dropout masks: the resumed step cannot "
                       "repeat the uninterrupted one, so there is nothing to compare (save torch.get_rng_state() "
                       "beside it to make the resume reproducible)")
    models = resume_one_step(ctx, state)
    if reference is None:
        actual = fingerprint({name: m.state_dict() for name, m in models.items()})["tensors"]
        problems = fingerprint_differences(ctx.entry["next_step"], actual, ("dtype", "shape", "hash"))
        if problems:
            return failed("bitexact: false; resumed step differs from the uninterrupted one: "
                          + summarize(problems, len(actual)))
        return passed(f"bitexact: true; step {ctx.case_section['steps'] + 1} after resume is bit-identical to an "
                      f"uninterrupted run")
    actual = {f"{n}.{k}": v for n, m in models.items() for k, v in m.state_dict().items()}
    if set(actual) != set(reference):
        return failed("resumed state's entries differ from the producer's next step: "
                      + summarize(fingerprint_differences(reference, actual, ()), len(reference), "entries"))
    worst, where = max_abs_difference(reference, actual)
    atol = float(ctx.case_section["resume_atol"])
    # "pass" within atol is not bit-exact: the record says which (issue 11)
    exact = f"bitexact: {'true' if worst == 0.0 else 'false'}"
    if worst > atol:
        return failed(f"{exact}; resumed step is {worst:.3g} away from the producer's uninterrupted step at {where} "
                      f"(atol {atol:g})")
    return passed(f"{exact}; resumed step within {worst:.3g} of the producer's uninterrupted step (atol {atol:g})")
