"""Tied weights (embedding and output projection share a Parameter) and a buffer that is a view."""

import torch
from torch import nn

from harness.case import Case, register


class TiedLM(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("table", torch.arange(32, dtype=torch.float32).reshape(4, 8))
        self.register_buffer("table_row", self.table[1])  # a view into `table`'s storage

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.hidden(self.embed(tokens)))
        return self.head(hidden) + self.table_row.sum()


CASE = register(Case(
    name="tied",
    exercises="an Embedding and an output Linear tied to one Parameter, and a buffer viewing another buffer",
    build=TiedLM,
    inputs=lambda: (torch.randint(0, 50, (2, 7)),),
))
