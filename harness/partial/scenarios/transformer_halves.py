"""The transformer encoder–decoder checkpoint loaded into an encoder-only model and into the decoder half.

Both targets reuse the checkpoint's module names (``embed``, ``encoder`` / ``decoder``, ``out``),
so ``strict=False`` must load those and report the other half as unexpected keys.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.case import Case
from harness.partial import Scenario, register
from harness_cases.transformer import decoder_stack, encoder_stack


class EncoderOnly(nn.Module):
    """The encoder half of harness_cases.transformer.Seq2Seq, under the same names."""

    def __init__(self, vocab: int = 40, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = encoder_stack(dim, heads, layers)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(src))


class DecoderHalf(nn.Module):
    """The decoder half of harness_cases.transformer.Seq2Seq (embedding, decoder, output head), same names."""

    def __init__(self, vocab: int = 40, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.decoder = decoder_stack(dim, heads, layers)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(self.embed(tgt), memory))


def _encoder_only(case: Case) -> nn.Module:
    return EncoderOnly()


def _decoder_half(case: Case) -> nn.Module:
    return DecoderHalf()


register(Scenario(
    name="transformer_encoder_only",
    description="full encoder–decoder checkpoint into an encoder-only model: the decoder and head are unexpected",
    source_cases=("transformer",),
    build_target=_encoder_only,
))

register(Scenario(
    name="transformer_decoder_half",
    description="full encoder–decoder checkpoint into the decoder half: the encoder is unexpected",
    source_cases=("transformer",),
    build_target=_decoder_half,
))
