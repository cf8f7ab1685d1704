"""A GAN pair: generator and discriminator, saved together by the multi-model format."""

import torch
from torch import nn

from harness.case import Case, register


class Generator(nn.Module):
    def __init__(self, noise: int = 8, features: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(noise, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, features),
                                 nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


CASE = register(Case(
    name="gan",
    exercises="two models and two optimizers in one dict (the GAN layout), BatchNorm in the generator",
    build=lambda: {"generator": Generator(), "discriminator": Discriminator()},
    models=("generator", "discriminator"),
    inputs=lambda: {"generator": (torch.randn(4, 8),), "discriminator": (torch.randn(4, 16),)},
))
