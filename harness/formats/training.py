"""Training checkpoints: the dict real training scripts save to resume later.

``training_checkpoint`` holds epoch, model/optimizer/lr-scheduler state, the loss as a float and
as a tensor, and the torch and numpy RNG states. ``training_checkpoint_extras`` adds what real
scripts also drop in — a numpy scalar metric and the ``argparse.Namespace`` of the run — which
is exactly what a ``weights_only`` load refuses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import numpy
import torch
from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, Resumable, Source, _torch_pickle, load_into_fresh, register


class TrainingCheckpoint(Format):
    holds = frozenset({"weights", "optimizer"})
    capabilities = _torch_pickle.capabilities(legacy=False)
    # The extras variant's Namespace and numpy scalar need weights_only=False; the harness loads
    # only its own hash-verified files that way (see harness.consume.collect).

    def __init__(self, extras: bool) -> None:
        self.extras = extras
        self.name = "training_checkpoint_extras" if extras else "training_checkpoint"
        extra = " plus a numpy scalar and an argparse.Namespace" if extras else ""
        self.description = ("{'epoch', 'model_state_dict', 'optimizer_state_dict', 'scheduler_state_dict', "
                            f"'loss', RNG states}}{extra}")
        if extras:
            self.holds = self.holds | {"extras"}

    def payload(self, prepared: Prepared) -> Any:
        checkpoint = {
            "epoch": prepared.steps,
            "model_state_dict": prepared.one_model.state_dict(),
            "optimizer_state_dict": prepared.optimizers["model"].state_dict(),
            "scheduler_state_dict": prepared.schedulers["model"].state_dict(),
            "loss": prepared.loss,
            "loss_tensor": torch.tensor(prepared.loss),
            "torch_rng_state": prepared.rng_state,
            "numpy_rng_state": prepared.numpy_rng,
        }
        if self.extras:
            checkpoint["best_metric"] = numpy.float64(prepared.loss) / 2
            checkpoint["args"] = argparse.Namespace(arch=prepared.case.name, lr=1e-3, epochs=prepared.steps,
                                                    optimizer=prepared.case.optimizer_name)
        return checkpoint

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, legacy=False)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case], mmap: bool = False) -> Any:
        return _torch_pickle.load(source, mode, map_location, mmap)

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return load_into_fresh(case, {"model": obj["model_state_dict"]})

    def resumable(self, obj: Any) -> Optional[Resumable]:
        return Resumable(
            model_states={"model": obj["model_state_dict"]},
            optimizer_states={"model": obj["optimizer_state_dict"]},
            scheduler_states={"model": obj["scheduler_state_dict"]},
            rng_state=obj["torch_rng_state"],
        )


register(TrainingCheckpoint(extras=False))
register(TrainingCheckpoint(extras=True))
