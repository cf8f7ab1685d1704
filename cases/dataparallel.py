"""A model saved from inside ``nn.DataParallel``: every state_dict key starts with ``module.``.

This is what multi-GPU training scripts save when they call ``state_dict()`` on the wrapper
(pytorch#3805); the ``dataparallel_into_bare`` partial-load scenario loads it into the bare model.
The case is about the key prefix, not about scattering batches: the wrapper always runs its
module directly, as ``DataParallel`` itself does on a machine without a GPU.
"""

import torch
from torch import nn

from harness.case import Case, register


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.norm(self.fc1(x))))


def wrap(model: nn.Module) -> nn.DataParallel:
    """``nn.DataParallel(model)`` that keeps ``model`` where it is and calls it directly.

    With a GPU present, DataParallel moves the module to cuda:0 and scatters every call; a CPU
    session on such a machine would then fail. Clearing ``device_ids`` gives the wrapper's own
    CPU-only behaviour everywhere, with the same ``module.`` keys.
    """
    wrapper = nn.DataParallel(model)
    if wrapper.device_ids:
        wrapper.module.cpu()
        wrapper.device_ids = []
    return wrapper


CASE = register(Case(
    name="dataparallel",
    exercises="a state_dict saved from nn.DataParallel: 'module.'-prefixed keys (the partial-load prefix subject)",
    build=lambda: wrap(SmallNet()),
    inputs=lambda: (torch.randn(5, 6),),
    corpus=False,
    formats=("state_dict_zip", "training_checkpoint"),
))
