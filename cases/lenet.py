"""TheModelClass: the LeNet-style network of PyTorch's saving-and-loading tutorial."""

import torch
import torch.nn.functional as F
from torch import nn

from harness.case import Case, register


class TheModelClass(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


CASE = register(Case(
    name="lenet",
    exercises="convolutions, pooling and a fully connected stack (the tutorial model), with SGD momentum",
    build=TheModelClass,
    inputs=lambda: (torch.randn(2, 3, 32, 32),),
    optimizer="sgd",
    corpus=False,  # 250 KB a file: too big for the committed corpus
))
