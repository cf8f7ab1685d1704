"""Resume: k steps → save → load into fresh models and optimizers → one more step equals k+1
uninterrupted steps: bitwise against the producer's fingerprint in the same environment; across
releases or devices, within the case's ``resume_atol`` of the producer's stored next-step state."""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch

from harness.case import make_optimizers, train_step
from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.checks._compare import fingerprint_differences, max_abs_difference, summarize
from harness.fingerprint import fingerprint
from harness.formats import Format, Resumable


class ResumeCheck(Check):
    name = "resume"
    description = "one step after resuming equals one more uninterrupted step"
    #: the resumed step is judged after the second round trip has fingerprinted the same load
    after = ("resave",)
    needs_case = True

    def applies(self, fmt: Format, entry: dict[str, Any]) -> Optional[str]:
        return None if "optimizer" in fmt.holds else f"{fmt.name} holds no optimizer state"

    def run(self, ctx: Context) -> Outcome:
        # a copy: Optimizer.load_state_dict shares the loaded tensors and step() updates them in place
        state = ctx.fmt.resumable(copy.deepcopy(ctx.loaded))
        models = resume_one_step(ctx, state)
        if ctx.same_numerics:
            actual = fingerprint({name: m.state_dict() for name, m in models.items()})["tensors"]
            problems = fingerprint_differences(ctx.entry["next_step"], actual, ("dtype", "shape", "hash"))
            if problems:
                return failed("resumed step differs from the uninterrupted one: " + summarize(problems, len(actual)))
            return passed(f"step {ctx.case_section['steps'] + 1} after resume is bit-identical to an uninterrupted run")
        reference = ctx.stored.get("next_step")
        if reference is None:
            return skipped("the producer stored no next-step state (too large); only same-environment resumes are checked")
        actual = {f"{n}.{k}": v for n, m in models.items() for k, v in m.state_dict().items()}
        worst, where = max_abs_difference(reference, actual)
        atol = float(ctx.case_section["resume_atol"])
        if worst > atol:
            return failed(f"resumed step is {worst:.3g} away from the producer's uninterrupted step at {where} "
                          f"(atol {atol:g})")
        return passed(f"resumed step within {worst:.3g} of the producer's uninterrupted step (atol {atol:g})")


def resume_one_step(ctx: Context, state: Resumable) -> dict[str, torch.nn.Module]:
    """Fresh models and optimizers restored from ``state``, then one training step."""
    models = ctx.case.fresh_models()
    for name, model in models.items():
        model.load_state_dict(state.model_states[name])
    optimizers, schedulers = make_optimizers(ctx.case, models)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state.optimizer_states[name])
    for name, scheduler_state in state.scheduler_states.items():
        schedulers[name].load_state_dict(scheduler_state)
    if state.rng_state is not None:
        torch.set_rng_state(state.rng_state.cpu())
    stored = ctx.stored
    train_step(models, optimizers, schedulers, stored["inputs"])
    return models


register(ResumeCheck())
