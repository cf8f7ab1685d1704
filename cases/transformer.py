"""A small transformer encoder–decoder built from nn.TransformerEncoder/Decoder layers."""

import torch
from torch import nn

from harness.case import Case, register


def encoder_stack(dim: int = 32, heads: int = 4, layers: int = 2) -> nn.TransformerEncoder:
    """The encoder half; shared with the partial-load scenarios that load half a checkpoint."""
    return nn.TransformerEncoder(
        nn.TransformerEncoderLayer(dim, heads, dim_feedforward=64, dropout=0.1, batch_first=True), layers,
        enable_nested_tensor=False)


def decoder_stack(dim: int = 32, heads: int = 4, layers: int = 2) -> nn.TransformerDecoder:
    """The decoder half; shared with the partial-load scenarios that load half a checkpoint."""
    return nn.TransformerDecoder(
        nn.TransformerDecoderLayer(dim, heads, dim_feedforward=64, dropout=0.1, batch_first=True), layers)


class Seq2Seq(nn.Module):
    def __init__(self, vocab: int = 40, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = encoder_stack(dim, heads, layers)
        self.decoder = decoder_stack(dim, heads, layers)
        self.out = nn.Linear(dim, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(self.embed(src))
        return self.out(self.decoder(self.embed(tgt), memory))


CASE = register(Case(
    name="transformer",
    exercises="nn.TransformerEncoder/Decoder layers with attention in-projections, LayerNorm and dropout",
    build=Seq2Seq,
    inputs=lambda: (torch.randint(0, 40, (2, 9)), torch.randint(0, 40, (2, 7))),
    corpus=False,  # 300 KB a file: too big for the committed corpus
))
