"""Deliberately broken formats: each saves correctly and damages one thing, so exactly the check
that guards that thing must report ``fail``.

Nothing here registers anything: tests/plugins/broken.py registers these formats for the CLI
runs of tests/test_checks_fail.py, and tests/test_checks_fast.py uses them in-process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.case import Case
from harness.formats import Resumable
from harness.formats.state_dict import StateDict
from harness.formats.training import TrainingCheckpoint
from harness.formats.whole_model import WholeModel

DRIFT_VARIABLE = "CKPT_HARNESS_TEST_DRIFT"


class DropBuffer(StateDict):
    """Loses the last buffer-like entry of the state_dict on load."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_drop_buffer"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        state = super().load(path, mode, map_location, case, **kwargs)
        state.pop(list(state)[-1])
        return state


class FlipBit(StateDict):
    """Flips one mantissa bit of the first element of the first float32 bias on load (every output sees it)."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_flip_bit"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        state = super().load(path, mode, map_location, case, **kwargs)
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

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        model = super().load(path, mode, map_location, case, **kwargs)
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

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        model = super().load(path, mode, map_location, case, **kwargs)
        return model.train(not model.training)


class ForgetMomentum(TrainingCheckpoint):
    """Loads faithfully, but the training state it hands over to resume has zeroed momentum: the
    weights are right, resuming is not (both resume and optimizer_device must notice)."""

    def __init__(self) -> None:
        super().__init__(extras=False)
        self.name = "broken_forget_momentum"

    def resumable(self, obj: Any) -> Resumable | None:
        state = super().resumable(obj)
        for per_param in state.optimizer_states["model"]["state"].values():
            for key, value in per_param.items():
                if key != "step" and isinstance(value, torch.Tensor):
                    per_param[key] = torch.zeros_like(value)
        return state


class LossyResave(StateDict):
    """Loads faithfully, but a second save drops the last entry."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_lossy_resave"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        state = super().load(path, mode, map_location, case, **kwargs)
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


class GrowBytes(StateDict):
    """Saves each unshared tensor as a view into a storage 64x its size: the values, shapes and
    strides are right, the file holds far more tensor bytes than the tensors span."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_grow_bytes"

    def save(self, payload: Any, path: Path) -> None:
        groups: dict[Any, int] = {}
        for tensor in payload.values():
            key = tensor.untyped_storage().data_ptr()
            groups[key] = groups.get(key, 0) + 1
        grown = type(payload)()
        for name, tensor in payload.items():
            if groups[tensor.untyped_storage().data_ptr()] == 1 and tensor.is_contiguous() and tensor.numel():
                padded = torch.zeros(tensor.numel() * 64 + 4096, dtype=tensor.dtype)
                padded[: tensor.numel()] = tensor.detach().reshape(-1)
                view = padded[: tensor.numel()].view(tensor.shape)
                tensor = nn.Parameter(view, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else view
            grown[name] = tensor
        grown._metadata = getattr(payload, "_metadata", None)
        super().save(grown, path)


class ChangeValue(TrainingCheckpoint):
    """Loads a training checkpoint whose ``epoch`` (a plain int) is one more than was saved."""

    def __init__(self) -> None:
        super().__init__(extras=False)
        self.name = "broken_change_value"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        checkpoint = super().load(path, mode, map_location, case, **kwargs)
        checkpoint["epoch"] += 1
        return checkpoint


class ExtraValue(TrainingCheckpoint):
    """Loads a training checkpoint with one non-tensor value more than was saved."""

    def __init__(self) -> None:
        super().__init__(extras=False)
        self.name = "broken_extra_value"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        checkpoint = super().load(path, mode, map_location, case, **kwargs)
        checkpoint["note"] = "not in the saved file"
        return checkpoint


class ChangeMetadata(StateDict):
    """Loads a state_dict whose ``_metadata`` says every module is one version newer."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_change_metadata"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        state = super().load(path, mode, map_location, case, **kwargs)
        for entry in state._metadata.values():
            entry["version"] = entry.get("version", 0) + 1
        return state


class StepOnMeta(TrainingCheckpoint):
    """Hands over an optimizer state whose tensor ``step`` values sit on the meta device (as a
    release that moved step with the parameters would leave them)."""

    def __init__(self) -> None:
        super().__init__(extras=False)
        self.name = "broken_step_on_meta"

    def resumable(self, obj: Any) -> Resumable | None:
        state = super().resumable(obj)
        for per_param in state.optimizer_states["model"]["state"].values():
            if isinstance(per_param.get("step"), torch.Tensor):
                per_param["step"] = per_param["step"].to("meta")
        return state


class NotAModule(WholeModel):
    """Loads a whole model and hands back its state_dict instead of the module: the flags are lost."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "broken_not_a_module"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        return super().load(path, mode, map_location, case, **kwargs).state_dict()

    def contents(self, obj: Any) -> Any:
        return obj


def all_broken() -> list:
    """One instance of every broken format, in a fixed order."""
    return [DropBuffer(), FlipBit(), Untie(), FlipMode(), ForgetMomentum(), LossyResave(), GrowBytes(),
            ChangeValue(), ExtraValue(), ChangeMetadata(), StepOnMeta(), NotAModule()]


#: What each broken format must make fail: ``(case, broken format, check, words in its detail)``. One
#: table for both tiers: tests/test_checks_fast.py runs each row in-process, tests/test_checks_fail.py
#: reads the same row from the records the real produce and consume write.
CAUGHT = [
    ("batchnorm", "broken_drop_buffer", "tensors", "missing"),
    ("tied", "broken_flip_bit", "tensors", "values differ"),
    ("tied", "broken_flip_bit", "outputs", "not bit-identical"),
    ("tied", "broken_untie", "sharing", "sharing changed"),
    ("batchnorm", "broken_flip_mode", "mode", "changed train/eval flag"),
    ("batchnorm", "broken_not_a_module", "mode", "not a module"),
    ("tied", "broken_forget_momentum", "resume", "bitexact: false; resumed step differs"),
    ("tied", "broken_forget_momentum", "optimizer_device", "resumed step differs"),
    ("tied", "broken_lossy_resave", "resave", "missing"),
    ("tied", "broken_grow_bytes", "sharing", "tensor bytes for a"),
    ("simple", "broken_grow_bytes", "sharing", "tensor bytes for a"),
    ("tied", "broken_change_value", "tensors", "value epoch: 2 != 3"),
    ("tied", "broken_extra_value", "tensors", "value note unexpected"),
    ("batchnorm", "broken_change_metadata", "tensors", "state_dict._metadata (module versions) differ"),
    ("tied", "broken_step_on_meta", "optimizer_device", "step is not a CPU tensor: meta"),
]


class NoisyLoad(StateDict):
    """Loads faithfully but warns while doing so: the warning must reach the load record."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "noisy_load"

    def load(self, path: Any, mode: str, map_location: Any, case: Case | None, **kwargs: Any) -> Any:
        import warnings

        warnings.warn("noisy loader says hello\nsecond line is dropped", UserWarning, stacklevel=2)
        return super().load(path, mode, map_location, case, **kwargs)
