"""Fixed batches (the harness seeds torch before calling them)."""

from __future__ import annotations

import torch


def image_batch() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, 8, 8),)


def token_batch() -> tuple[torch.Tensor]:
    return (torch.randint(0, 50, (4, 12)),)
