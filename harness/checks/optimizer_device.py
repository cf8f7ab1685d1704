"""``optimizer_device``: a CUDA-tagged training checkpoint mapped to the CPU resumes correctly and
Adam's ``step`` stays a CPU tensor (pytorch#80809); with a GPU, a CPU checkpoint resumes on it.
The resumed step is the ``resume`` check's own (:mod:`harness.checks._resume`), judged the same way."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch

from harness import compat, cuda_tags
from harness.checks import Check, Context, Outcome, _devices, failed, passed, register, skipped
from harness.checks._compare import max_abs_difference
from harness.checks._resume import has_dropout, judge, restore, resume_one_step, steps_off_cpu, training_state
from harness.formats import Format


class OptimizerDeviceCheck(Check):
    name = "optimizer_device"
    description = ("optimizer state moved across devices resumes correctly; Adam's step stays a CPU tensor "
                   "(pytorch#80809)")
    needs_case = True

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        if "optimizer" not in fmt.holds:
            return f"{fmt.name} holds no optimizer state"
        return _devices.retaggable(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="cuda-tags-") as folder:
            try:
                tagged = _devices.tagged_copy(ctx, Path(folder), "cuda:0")
            except cuda_tags.TagError as exc:
                return failed(f"could not make a CUDA-tagged copy: {exc}")
            loaded = ctx.load("cpu", path=tagged.path)
        _, optimizers, _ = restore(ctx, training_state(ctx, loaded))
        steps = tensor_steps(optimizers)
        misplaced = steps_off_cpu(optimizers)
        if misplaced:
            return failed(f"after map_location='cpu' and optimizer.load_state_dict, step is not a CPU tensor: "
                          f"{', '.join(misplaced)}")
        resumed = judge(ctx, loaded)
        if resumed.status != "pass":
            return Outcome(resumed.status, f"cuda:0-tagged checkpoint mapped to cpu: {resumed.detail}")
        if not steps:
            return skipped("the optimizer state holds no tensor step (SGD, or a release that keeps it a number): "
                           f"no step device to check; cuda:0-tagged checkpoint mapped to cpu: {resumed.detail}")
        detail = f"cuda:0-tagged checkpoint mapped to cpu: {steps} tensor step(s) on cpu; {resumed.detail}"
        if compat.cuda_device_count():
            problem, note, compared = resume_on_cuda(ctx)
            if problem:
                return failed(problem)
            if not compared:
                return skipped(f"{detail}; GPU resume not compared: {note}")
            detail += f"; {note}"
        return passed(detail)


def tensor_steps(optimizers: dict) -> int:
    """How many tensor ``step`` values the optimizers hold (SGD holds none, old releases keep a number)."""
    return sum(isinstance(s.get("step"), torch.Tensor) for o in optimizers.values() for s in o.state.values())


def resume_on_cuda(ctx: Context) -> tuple[Optional[str], str, bool]:
    """A CPU checkpoint loaded with map_location='cuda:0' into models on cuda:0 resumes within tolerance.

    (problem or None, note, whether the resumed values were compared): without a stored next step
    or with dropout (which draws from the CUDA generator) nothing is compared, and the note says why.
    """
    loaded = ctx.load("cuda:0")
    _, optimizers, _ = restore(ctx, training_state(ctx, loaded), "cuda:0")
    wrong = steps_off_cpu(optimizers)
    if wrong:
        return f"map_location='cuda:0' then optimizer.load_state_dict put step on {wrong}", "", True
    reference = ctx.stored.get("next_step")
    if reference is None:
        return None, "the producer stored no next step", False
    models = resume_one_step(ctx, training_state(ctx, loaded), "cuda:0")
    if has_dropout(models):
        return None, "step on cpu after loading onto cuda:0, but dropout draws from the CUDA generator", False
    actual = {f"{n}.{k}": v for n, m in models.items() for k, v in m.state_dict().items()}
    worst, where = max_abs_difference(reference, actual)
    atol = float(ctx.case_section["resume_atol"])
    if worst > atol:
        return f"resumed on cuda:0, {worst:.3g} away from the producer's next step at {where} (atol {atol:g})", "", True
    return None, f"resumed on cuda:0 within {worst:.3g} (step stays on cpu)", True


register(OptimizerDeviceCheck())
