"""SimpleModel: one ``nn.Linear(10, 2)``, the smallest useful checkpoint."""

import torch
from torch import nn

from harness.case import Case, register


class SimpleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


CASE = register(Case(
    name="simple",
    exercises="a single Linear layer: the baseline every format must get right",
    build=SimpleModel,
    inputs=lambda: (torch.randn(4, 10),),
    optimizer="sgd",
))
