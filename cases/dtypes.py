"""Mixed dtypes and layouts: half, bfloat16, double, int64, bool, complex64, empty,
non-contiguous and channels_last tensors."""

import torch
from torch import nn

from harness.case import Case, register


class MixedDtypes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # Frozen (requires_grad=False): CPU Adam has no float16 kernel in torch 1.13 ("addcmul_cpu_out"
        # not implemented for 'Half'), and a frozen Parameter is itself worth round-tripping.
        self.w_half = nn.Parameter(torch.randn(4, 3).half(), requires_grad=False)
        self.w_bf16 = nn.Parameter(torch.randn(4, 3).bfloat16(), requires_grad=False)
        self.w_double = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        self.transposed = nn.Parameter(torch.randn(3, 4).t())  # stride (1, 4): not contiguous
        self.conv = nn.Conv2d(2, 4, 3)
        self.conv.weight = nn.Parameter(self.conv.weight.detach().to(memory_format=torch.channels_last))
        self.register_buffer("counts", torch.arange(6, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True, True]))
        self.register_buffer("phase", torch.randn(3, dtype=torch.complex64))
        self.register_buffer("empty", torch.zeros(0, 5))

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        mixed = self.w_half.float() + self.w_bf16.float() + self.w_double.float() + self.transposed
        y = x @ mixed.t()
        y = y * self.mask.float() + self.counts[:4].float() * 0.01 + self.phase.abs().sum()
        return y + self.conv(image).mean() + self.empty.sum()


CASE = register(Case(
    name="dtypes",
    exercises="frozen float16/bfloat16 and trainable float64 parameters, int64/bool/complex64 buffers, "
              "a zero-size buffer, "
              "a transposed (non-contiguous) parameter and a channels_last conv weight",
    build=MixedDtypes,
    inputs=lambda: (torch.randn(5, 3), torch.randn(1, 2, 6, 6)),
))
