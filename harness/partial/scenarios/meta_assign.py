"""``load_state_dict(assign=True)`` into a model built on the meta device (the low-memory load).

Every key must be assigned without a copy and keep ``requires_grad``; exactly the non-persistent
buffers (not in any state_dict) are left on the meta device, which the user must re-create.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from harness import compat
from harness.case import Case
from harness.partial import Scenario, register


def _same_architecture(case: Case) -> nn.Module:
    model = case.build()
    assert isinstance(model, nn.Module), f"{case.name} builds more than one model"
    return model


def _unavailable() -> Optional[str]:
    return compat.load_state_dict_assign() or compat.meta_device_context()


register(Scenario(
    name="meta_assign",
    description="assign=True into the same architecture built on the meta device",
    source_cases=("transformer", "batchnorm"),
    build_target=_same_architecture,
    assign=True,
    unavailable=_unavailable,
))
