"""A bigger model's state_dict into a smaller one (fewer layers), and the reverse (more layers).

The checkpoint is the 2+2-layer transformer case; the targets are the same architecture with 1 or
3 layers on each side: extra layers in the file are unexpected keys, extra layers in the model
are missing keys that keep their initialisation.
"""

from __future__ import annotations

from torch import nn

from harness.partial import Scenario, register


def _seq2seq(layers: int) -> nn.Module:
    from harness_cases.transformer import Seq2Seq

    return Seq2Seq(layers=layers)


register(Scenario(
    name="transformer_into_smaller",
    description="2-layer encoder–decoder checkpoint into a 1-layer model: layers.1.* are unexpected",
    source_cases=("transformer",),
    build_target=lambda case: _seq2seq(1),
))

register(Scenario(
    name="transformer_into_bigger",
    description="2-layer encoder–decoder checkpoint into a 3-layer model: layers.2.* are missing",
    source_cases=("transformer",),
    build_target=lambda case: _seq2seq(3),
))
