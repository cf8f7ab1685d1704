"""The training checkpoint of PyTorch's own tutorials and seed scripts, and the most common file in the
wild: ``{'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'}`` and nothing else — no scheduler,
no RNG state, no numpy — so a plain ``weights_only=True`` load takes it.

Resuming restores the weights, the optimizer state and its current learning rate; the RNG is not
restored, so a model that draws random numbers in training (dropout) does not repeat the uninterrupted
step bit for bit. That is a property of the layout, recorded in ``expected.toml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from harness.case import Case, Prepared
from harness.formats import Format, Resumable, Source, _torch_pickle, load_into_fresh, register

KEYS = ("epoch", "model_state_dict", "optimizer_state_dict", "loss")


class PlainTrainingCheckpoint(Format):
    name = "plain_training_checkpoint"
    description = "{'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'} and nothing else (tutorial layout)"
    holds = frozenset({"weights", "optimizer"})
    capabilities = _torch_pickle.capabilities(legacy=False)

    def payload(self, prepared: Prepared) -> Any:
        return {"epoch": prepared.steps, "model_state_dict": prepared.models["model"].state_dict(),
                "optimizer_state_dict": prepared.optimizers["model"].state_dict(), "loss": float(prepared.loss)}

    def save(self, payload: Any, path: Path) -> None:
        _torch_pickle.save(payload, path, legacy=False)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case], mmap: bool = False) -> Any:
        loaded = _torch_pickle.load(source, mode, map_location, mmap)
        if not isinstance(loaded, dict) or set(loaded) != set(KEYS):
            keys = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
            raise ValueError(f"not the plain training layout: keys {keys}, expected {list(KEYS)}")
        return loaded

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        return load_into_fresh(case, {"model": obj["model_state_dict"]})

    def resumable(self, obj: Any) -> Optional[Resumable]:
        return Resumable(model_states={"model": obj["model_state_dict"]},
                         optimizer_states={"model": obj["optimizer_state_dict"]}, scheduler_states={})


register(PlainTrainingCheckpoint())
