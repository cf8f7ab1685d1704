"""BatchNorm running statistics, ``num_batches_tracked`` and a non-persistent buffer."""

import torch
from torch import nn

from harness.case import Case, register


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn2d = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.bn1d = nn.BatchNorm1d(4)
        # Not in the state_dict: rebuilt by __init__, kept only by whole-model pickles.
        self.register_buffer("scale", torch.full((4,), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2d(self.conv(x)))
        x = x.mean(dim=(2, 3))
        return self.bn1d(self.fc(x)) * self.scale


CASE = register(Case(
    name="batchnorm",
    exercises="BatchNorm running_mean/var and num_batches_tracked, a non-persistent buffer, saved in train mode",
    build=BatchNormNet,
    inputs=lambda: (torch.randn(6, 3, 8, 8),),
    save_mode="train",
))
