"""vgg16 fine-tuning: a new 10-class head, and an extra layer after the head.

``classifier[6]`` replaced by ``Linear(4096, 10)``: the size mismatch raises even with
``strict=False`` (long-standing PyTorch behaviour, pytorch#24139, #40859); the fix drops the
mismatched keys (:func:`harness.partial.fixes.drop_mismatched`) and reports them. An added
``classifier.add_linear`` only adds missing keys: ``strict=False`` loads.
"""

from __future__ import annotations

from torch import nn

from harness.case import Case
from harness.partial import Scenario, register


def _new_head(case: Case) -> nn.Module:
    model = case.fresh_models()["model"]
    classifier = model.classifier
    assert isinstance(classifier, nn.Sequential), "torchvision's VGG keeps its head in a Sequential"
    classifier[6] = nn.Linear(4096, 10)
    return model


def _added_linear(case: Case) -> nn.Module:
    model = case.fresh_models()["model"]
    classifier = model.classifier
    assert isinstance(classifier, nn.Sequential), "torchvision's VGG keeps its head in a Sequential"
    classifier.add_module("add_linear", nn.Linear(1000, 10))
    return model


register(Scenario(
    name="vgg16_new_head",
    description="vgg16 with classifier[6] = Linear(4096, 10): size mismatch raises even with strict=False",
    source_cases=("vgg16",),
    build_target=_new_head,
    fix="drop_mismatched",
))

register(Scenario(
    name="vgg16_added_linear",
    description="vgg16 with an added classifier.add_linear = Linear(1000, 10): only missing keys",
    source_cases=("vgg16",),
    build_target=_added_linear,
))
