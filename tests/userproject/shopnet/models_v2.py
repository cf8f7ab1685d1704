"""Version 2: the CNN has a new head (12 classes) and an added block; the encoder 3 layers and 5 labels."""

from __future__ import annotations

import torch

from shopnet.models import SmallResNet, TinyEncoder


def small_resnet_v2() -> SmallResNet:
    torch.manual_seed(0)
    return SmallResNet(classes=12, blocks=3)


def tiny_encoder_v2() -> TinyEncoder:
    torch.manual_seed(0)
    return TinyEncoder(layers=3, labels=5)
