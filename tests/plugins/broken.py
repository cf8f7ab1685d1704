"""Deliberately broken formats and a drifting case: proof that every check can fail.

Loaded as a plugin (``--plugin tests.plugins.broken``) by the produce and consume subprocesses
of tests/test_checks_fail.py. Each broken format saves correctly and damages one thing on load
(or on the second save), so exactly the check that guards that thing must report ``fail``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness.case import Case, register as register_case
from harness.formats import register
from harness.formats.state_dict import StateDict
from harness.formats.training import TrainingCheckpoint
from harness.formats.whole_model import WholeModel

DRIFT_VARIABLE = "CKPT_HARNESS_TEST_DRIFT"


class DropBuffer(StateDict):
    """Loses the last buffer-like entry of the state_dict on load."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_drop_buffer"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        state = super().load(path, mode, map_location, case)
        state.pop(list(state)[-1])
        return state


class FlipBit(StateDict):
    """Flips one mantissa bit of the first element of the first float32 bias on load (every output sees it)."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_flip_bit"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        state = super().load(path, mode, map_location, case)
        for name, tensor in state.items():
            if name.endswith("bias") and tensor.dtype == torch.float32 and tensor.numel():
                tensor.view(torch.int32).view(-1)[0] ^= 1 << 22  # top mantissa bit: survives rounding
                break
        return state


class Untie(WholeModel):
    """Replaces every Parameter shared by two modules with a private copy on load."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_untie"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        model = super().load(path, mode, map_location, case)
        seen: set[int] = set()
        for module in model.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if id(param) in seen:
                    setattr(module, name, nn.Parameter(param.detach().clone()))
                seen.add(id(param))
        return model


class FlipMode(WholeModel):
    """Returns the loaded module switched to the opposite train/eval mode."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_flip_mode"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        model = super().load(path, mode, map_location, case)
        return model.train(not model.training)


class ForgetMomentum(TrainingCheckpoint):
    """Zeroes the optimizer's momentum state on load: the weights are right, resuming is not."""

    def __init__(self) -> None:
        super().__init__(extras=False)
        self.name = "broken_forget_momentum"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        checkpoint = super().load(path, mode, map_location, case)
        for state in checkpoint["optimizer_state_dict"]["state"].values():
            for key, value in state.items():
                if key != "step" and isinstance(value, torch.Tensor):
                    state[key] = torch.zeros_like(value)
        return checkpoint

    def contents(self, obj: Any) -> Any:
        # Judge only the weights, so that the resume check is the one that must notice.
        return obj["model_state_dict"]


class LossyResave(StateDict):
    """Loads faithfully, but a second save drops the last entry."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_lossy_resave"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        state = super().load(path, mode, map_location, case)
        state._harness_loaded = True
        return state

    def save(self, payload: Any, path: Path) -> None:
        if getattr(payload, "_harness_loaded", False):
            payload = type(payload)(list(payload.items())[:-1])
        super().save(payload, path)


class Drifting(nn.Module):
    """A model whose forward changes when DRIFT_VARIABLE is set (as code can between releases)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + float(os.environ.get(DRIFT_VARIABLE, "0"))


for broken in (DropBuffer(), FlipBit(), Untie(), FlipMode(), ForgetMomentum(), LossyResave()):
    register(broken)

register_case(Case(
    name="drifting",
    exercises="a forward that changes between produce and consume",
    build=Drifting,
    inputs=lambda: (torch.randn(2, 4),),
))


class NoisyLoad(StateDict):
    """Loads faithfully but warns while doing so: the warning must reach the load record."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "noisy_load"

    def load(self, path: Path, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        import warnings

        warnings.warn("noisy loader says hello\nsecond line is dropped", UserWarning)
        return super().load(path, mode, map_location, case)


register(NoisyLoad())
