"""Hypothesis strategies for model specs (:mod:`harness.spec`), and the settings profiles.

Reusable outside the harness's own tests::

    from hypothesis import given
    from harness import strategies
    from harness.spec import build

    @given(strategies.model_specs())
    def test_my_save_and_load(spec):
        model = build(spec)
        ...

Every spec drawn is consistent (shapes chain, ties join weights of one shape, TransformerLayer
widths divide by nhead) and includes size-0 and size-1 dimensions, every float dtype for the
layers, complex/integer/bool extra tensors, non-contiguous and channels_last parameters, tied
weights and nested containers. Shrinking goes towards fewer, smaller, float32 layers.

Profiles (:func:`register_profiles`): ``dev`` (fast), ``ci`` (derandomized, no deadline; Hypothesis
loads it by itself when ``CI`` is set, because it is registered under exactly that name) and
``nightly`` (many examples). :func:`load_profile` picks ``HYPOTHESIS_PROFILE`` from the environment.
"""

from __future__ import annotations

import os
from typing import Optional

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from harness.spec import (
    CONTAINERS,
    FLOAT_DTYPES,
    LSTM,
    BatchNorm,
    Conv,
    Embedding,
    Extra,
    Layer,
    Linear,
    ModelSpec,
    TransformerLayer,
    output_width,
    weight_shape,
)

#: dtypes of extra tensors: floats and complex (buffers or parameters), integers and bool (buffers)
EXTRA_PARAMETER_DTYPES = FLOAT_DTYPES + ("complex64",)
EXTRA_BUFFER_DTYPES = EXTRA_PARAMETER_DTYPES + ("int64", "int32", "int8", "uint8", "bool")

small = st.integers(min_value=1, max_value=6)


def linear_layers() -> st.SearchStrategy[Linear]:
    return st.builds(Linear, out_features=small, bias=st.booleans(), transposed=st.booleans())


def conv_layers() -> st.SearchStrategy[Conv]:
    return st.builds(Conv, out_channels=small, dims=st.sampled_from((1, 2)), kernel=st.sampled_from((1, 3)),
                     channels_last=st.booleans(), bias=st.booleans())


def lstm_layers() -> st.SearchStrategy[LSTM]:
    return st.builds(LSTM, hidden=small, layers=st.integers(1, 2), bidirectional=st.booleans())


def batchnorm_layers() -> st.SearchStrategy[BatchNorm]:
    return st.builds(BatchNorm, affine=st.booleans(), track_running_stats=st.booleans())


@st.composite
def transformer_layers(draw: st.DrawFn, width: int) -> TransformerLayer:
    divisors = [n for n in (1, 2, 4) if width % n == 0]
    return TransformerLayer(nhead=draw(st.sampled_from(divisors)), ff=draw(st.integers(1, 8)))


@st.composite
def layer_stacks(draw: st.DrawFn, max_layers: int = 4) -> tuple[int, tuple[Layer, ...]]:
    """``(input features, layers)`` whose shapes chain; maybe an Embedding first."""
    layers: list[Layer] = []
    if draw(st.booleans()):
        embedding = Embedding(vocab=draw(small), dim=draw(small))
        layers.append(embedding)
        features = embedding.vocab  # unused by the model; keeps the spec's numbers small
        width = embedding.dim
    else:
        features = width = draw(small)
    for _ in range(draw(st.integers(0 if layers else 1, max_layers))):
        kind = draw(st.sampled_from(("linear", "conv", "batchnorm", "lstm", "transformer")))
        choices: dict[str, st.SearchStrategy[Layer]] = {
            "linear": linear_layers(), "conv": conv_layers(), "batchnorm": batchnorm_layers(), "lstm": lstm_layers(),
            "transformer": transformer_layers(width)}
        layer: Layer = draw(choices[kind])
        layers.append(layer)
        width = output_width(layer, width)
    return features, tuple(layers)


def _tie_candidates(features: int, layers: tuple[Layer, ...]) -> list[tuple[int, int]]:
    widths = [features]
    for layer in layers:
        widths.append(output_width(layer, widths[-1]))
    shapes = [weight_shape(layer, width) for layer, width in zip(layers, widths)]
    return [(i, j) for i in range(len(layers)) for j in range(i + 1, len(layers))
            if shapes[i] is not None and shapes[i] == shapes[j]]


@st.composite
def extras(draw: st.DrawFn) -> tuple[Extra, ...]:
    """Zero to three extra tensors: any dtype, size-0 and size-1 dimensions, non-contiguous layouts."""
    out = []
    for index in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("buffer", "parameter", "frozen")))
        dtype = draw(st.sampled_from(EXTRA_BUFFER_DTYPES if kind == "buffer" else EXTRA_PARAMETER_DTYPES))
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
        layouts = (["contiguous"] + (["transposed"] if len(shape) >= 2 else [])
                   + (["channels_last"] if len(shape) == 4 else []))
        out.append(Extra(name=f"extra{index}", shape=shape, dtype=dtype, kind=kind,
                         layout=draw(st.sampled_from(layouts)),
                         persistent=draw(st.booleans()) if kind == "buffer" else True))
    return tuple(out)


@st.composite
def model_specs(draw: st.DrawFn, max_layers: int = 4, dtypes: tuple[str, ...] = FLOAT_DTYPES,
                containers: tuple[str, ...] = CONTAINERS) -> ModelSpec:
    """A consistent :class:`ModelSpec` (see the module docstring for what varies)."""
    features, layers = draw(layer_stacks(max_layers))
    candidates = _tie_candidates(features, layers)
    ties = tuple(draw(st.lists(st.sampled_from(candidates), max_size=1))) if candidates else ()
    batch, length = draw(st.integers(0, 3)), draw(st.integers(1, 4))
    if batch * length == 1 and any(isinstance(layer, BatchNorm) for layer in layers):
        length = 2  # BatchNorm cannot normalise a single value per channel (see harness.spec.check)
    return ModelSpec(features=features, layers=layers, dtype=draw(st.sampled_from(dtypes)),
                     container=draw(st.sampled_from(containers)), ties=ties, extras=draw(extras()),
                     batch=batch, length=length, seed=draw(st.integers(0, 3)))


# -- settings profiles --------------------------------------------------------------------------

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


def register_profiles() -> None:
    """Register ``dev``, ``ci`` and ``nightly``. ``ci`` replaces Hypothesis's built-in one."""
    settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_SLOW_OK)
    settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None, print_blob=True,
                              suppress_health_check=_SLOW_OK)
    settings.register_profile("nightly", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)


def profile_name() -> str:
    """``$HYPOTHESIS_PROFILE``, else ``ci`` when ``CI`` is set, else ``dev``."""
    return os.environ.get(PROFILE_VARIABLE) or ("ci" if os.environ.get("CI") else "dev")


def profile(name: Optional[str] = None) -> settings:
    """The settings of profile ``name`` (default :func:`profile_name`), to decorate tests with."""
    register_profiles()
    return settings.get_profile(name or profile_name())


def load_profile(name: Optional[str] = None) -> str:
    """Load profile ``name`` (default :func:`profile_name`) for every test; return its name."""
    register_profiles()
    chosen = name or profile_name()
    settings.load_profile(chosen)
    return chosen
