"""A model saved from its ``torch.compile`` wrapper: every state_dict key starts with ``_orig_mod.``.

Compiled with ``backend="eager"``: TorchDynamo captures the graph and runs it with eager
kernels, so no C compiler is needed and the outputs are the eager model's (the outputs check holds
the compiled wrapper to them bit for bit in the same environment). Skipped where ``torch._dynamo``
does not import (torch < 2.0). The ``compiled_into_eager`` partial-load scenario loads it into the
bare model.
"""

import torch
from torch import nn

from harness.case import Case, register


class CompiledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def _build() -> nn.Module:
    return torch.compile(CompiledNet(), backend="eager")


CASE = register(Case(
    name="compiled",
    exercises="a state_dict saved from a torch.compile wrapper: '_orig_mod.'-prefixed keys",
    build=_build,
    inputs=lambda: (torch.randn(5, 6),),
    requires=("torch._dynamo",),
    corpus=False,
    formats=("state_dict_zip",),
))
