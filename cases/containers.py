"""Nested containers: ModuleDict, ModuleList, ParameterList and ParameterDict."""

import torch
from torch import nn

from harness.case import Case, register


class Containers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(6, 6) for _ in range(2)])
        self.heads = nn.ModuleDict({"left": nn.Linear(6, 2), "right": nn.Sequential(nn.Linear(6, 3), nn.ReLU())})
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(6)), nn.Parameter(torch.full((6,), 2.0))])
        self.offsets = nn.ParameterDict({"a": nn.Parameter(torch.zeros(2)), "b": nn.Parameter(torch.ones(3))})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block, scale in zip(self.blocks, self.scales):
            x = torch.relu(block(x)) * scale
        return self.heads["left"](x) + self.offsets["a"], self.heads["right"](x) + self.offsets["b"]


CASE = register(Case(
    name="containers",
    exercises="ModuleList, ModuleDict (with a nested Sequential), ParameterList and ParameterDict; tuple outputs",
    build=Containers,
    inputs=lambda: (torch.randn(3, 6),),
    optimizer="sgd",
))
