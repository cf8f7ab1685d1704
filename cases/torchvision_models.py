"""torchvision resnet18 and vgg16 with ``weights=None`` (no downloads), where torchvision imports."""

import torch

from harness.case import Case, register


def _resnet18():
    import torchvision

    return torchvision.models.resnet18(weights=None)


def _vgg16():
    import torchvision

    return torchvision.models.vgg16(weights=None)


RESNET18 = register(Case(
    name="resnet18",
    exercises="a real torchvision architecture: residual blocks, BatchNorm everywhere, downsample branches",
    build=_resnet18,
    inputs=lambda: (torch.randn(2, 3, 64, 64),),
    optimizer="sgd",
    requires=("torchvision",),
    atol=1e-4,
    corpus=False,
))

VGG16 = register(Case(
    name="vgg16",
    exercises="a large (528 MB) torchvision model with a Sequential classifier; the partial-load subject",
    build=_vgg16,
    inputs=lambda: (torch.randn(1, 3, 32, 32),),
    optimizer="sgd",
    requires=("torchvision",),
    atol=1e-4,
    corpus=False,
    # 528 MB a file: the two weights formats people use for big models, not all eleven
    formats=("state_dict_zip", "safetensors"),
))
