"""Architecture specs: small frozen dataclasses that describe a model, and :func:`build` to make it.

A :class:`ModelSpec` is a stack of layers working on a ``(batch, length, features)`` sequence
(an :class:`Embedding` first takes ``(batch, length)`` token ids instead), the dtype of every
parameter, the container the layers sit in, tied weights and extra tensors (buffers and
parameters of any dtype and layout). Specs are plain data: ``repr(spec)`` is Python that rebuilds
them (fields left at their defaults are omitted) and :func:`to_code` is a snippet a user can paste.
``harness.strategies`` generates them with Hypothesis; :func:`build` turns one into an
``nn.Module`` under a fixed seed, so the same spec always gives the same weights.

The module classes live here at module level, so whole-model pickles find them again; each
container kind is its own class with its own ``forward``, so TorchScript can script every one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "complex64": torch.complex64, "int64": torch.int64, "int32": torch.int32,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
CONTAINERS = ("sequential", "module_list", "module_dict", "nested")


class _Readable:
    """A repr that is valid Python and names only the fields that differ from their defaults."""

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            default = field.default if field.default is not dataclasses.MISSING else dataclasses.MISSING
            if value != default:
                parts.append(f"{field.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# -- layers -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, repr=False)
class Linear(_Readable):
    """``nn.Linear(features, out_features)``; ``transposed`` stores the weight non-contiguously."""

    out_features: int
    bias: bool = True
    transposed: bool = False


@dataclasses.dataclass(frozen=True, repr=False)
class Conv(_Readable):
    """``nn.Conv1d`` (``dims=1``) or ``nn.Conv2d`` (``dims=2``, the sequence as a 1-wide image), same length out."""

    out_channels: int
    dims: int = 1
    kernel: int = 3
    channels_last: bool = False
    bias: bool = True


@dataclasses.dataclass(frozen=True, repr=False)
class BatchNorm(_Readable):
    """``nn.BatchNorm1d`` over the features; running stats (a long counter among them) are buffers."""

    affine: bool = True
    track_running_stats: bool = True


@dataclasses.dataclass(frozen=True, repr=False)
class Embedding(_Readable):
    """``nn.Embedding(vocab, dim)``: only as the first layer; the model then takes token ids."""

    vocab: int
    dim: int


@dataclasses.dataclass(frozen=True, repr=False)
class LSTM(_Readable):
    """``nn.LSTM(features, hidden, layers, batch_first=True)``; the output sequence is kept."""

    hidden: int
    layers: int = 1
    bidirectional: bool = False


@dataclasses.dataclass(frozen=True, repr=False)
class TransformerLayer(_Readable):
    """``nn.TransformerEncoderLayer(features, nhead, ff, dropout=0, batch_first=True)``."""

    nhead: int = 1
    ff: int = 8


Layer = Union[Linear, Conv, BatchNorm, Embedding, LSTM, TransformerLayer]


@dataclasses.dataclass(frozen=True, repr=False)
class Extra(_Readable):
    """An extra tensor on the root module: ``kind`` buffer, parameter or frozen (a parameter
    without gradient); ``layout`` contiguous, transposed (last two dims) or channels_last (4-D)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = "buffer"
    layout: str = "contiguous"
    persistent: bool = True


@dataclasses.dataclass(frozen=True, repr=False)
class ModelSpec(_Readable):
    """A whole model: ``layers`` applied in order to ``(batch, length, features)`` inputs."""

    features: int
    layers: tuple[Layer, ...]
    dtype: str = "float32"
    container: str = "sequential"
    #: (i, j): layer j's weight is layer i's weight Parameter (same shape)
    ties: tuple[tuple[int, int], ...] = ()
    extras: tuple[Extra, ...] = ()
    batch: int = 2
    length: int = 3
    seed: int = 0

    @property
    def takes_tokens(self) -> bool:
        return bool(self.layers) and isinstance(self.layers[0], Embedding)

    def widths(self) -> list[int]:
        """Feature width entering each layer, then the output width (``len(layers) + 1`` values)."""
        widths = [self.features]
        for layer in self.layers:
            widths.append(output_width(layer, widths[-1]))
        return widths

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


def output_width(layer: Layer, width: int) -> int:
    """Features out of ``layer`` given ``width`` in."""
    if isinstance(layer, Linear):
        return layer.out_features
    if isinstance(layer, Conv):
        return layer.out_channels
    if isinstance(layer, Embedding):
        return layer.dim
    if isinstance(layer, LSTM):
        return layer.hidden * (2 if layer.bidirectional else 1)
    return width  # BatchNorm, TransformerLayer keep the width


def weight_shape(layer: Layer, width: int) -> Optional[tuple[int, ...]]:
    """Shape of the layer's ``weight`` (what a tie needs to match), or None when it has no single weight."""
    if isinstance(layer, Linear):
        return (layer.out_features, width)
    if isinstance(layer, Embedding):
        return (layer.vocab, layer.dim)
    return None


# -- modules ------------------------------------------------------------------------------------

class ChannelsFirst(nn.Module):
    """Runs a channels-first layer (Conv1d, BatchNorm1d) on a ``(batch, length, features)`` sequence."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.transpose(1, 2)).transpose(1, 2)


class SequenceConv2d(nn.Module):
    """A Conv2d over the sequence seen as a ``features × length × 1`` image."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)


class LSTMSequence(nn.Module):
    """An LSTM that returns its output sequence only."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return output


class SequentialModel(nn.Module):
    """Layers in an ``nn.Sequential``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ListModel(nn.Module):
    """Layers in an ``nn.ModuleList``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.body = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            x = block(x)
        return x


class DictModel(nn.Module):
    """Layers in an ``nn.ModuleDict`` (keys keep the order)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.body = nn.ModuleDict({f"layer{i}": block for i, block in enumerate(blocks)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.body.values():
            x = block(x)
        return x


class NestedModel(nn.Module):
    """Layers in pairs: a ModuleList of Sequentials, inside a ModuleDict."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        pairs = [nn.Sequential(*blocks[i:i + 2]) for i in range(0, len(blocks), 2)]
        self.body = nn.ModuleDict({"stages": nn.ModuleList(pairs)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a ModuleList; TorchScript takes no cast, and reads any other type comment on a line of a scripted
        # method as an annotation: the mypy ignore must stand alone at the end of its line
        for stage in self.body["stages"]:  # type: ignore[attr-defined]
            x = stage(x)
        return x


MODEL_CLASSES: dict[str, Callable[[list[nn.Module]], nn.Module]] = {
    "sequential": SequentialModel, "module_list": ListModel, "module_dict": DictModel, "nested": NestedModel}


# -- build --------------------------------------------------------------------------------------

def make_layer(layer: Layer, width: int) -> nn.Module:
    """The module for one layer spec, taking ``width`` features in."""
    if isinstance(layer, Linear):
        module = nn.Linear(width, layer.out_features, bias=layer.bias)
        if layer.transposed:
            module.weight = nn.Parameter(module.weight.detach().t().contiguous().t())
        return module
    if isinstance(layer, Conv):
        shape = (width, layer.out_channels, layer.kernel)
        if layer.dims == 1:
            return ChannelsFirst(nn.Conv1d(*shape, padding=layer.kernel // 2, bias=layer.bias))
        conv = nn.Conv2d(*shape, padding=layer.kernel // 2, bias=layer.bias)
        if layer.channels_last:
            conv.weight = nn.Parameter(conv.weight.detach().to(memory_format=torch.channels_last))
        return SequenceConv2d(conv)
    if isinstance(layer, BatchNorm):
        return ChannelsFirst(nn.BatchNorm1d(width, affine=layer.affine, track_running_stats=layer.track_running_stats))
    if isinstance(layer, Embedding):
        return nn.Embedding(layer.vocab, layer.dim)
    if isinstance(layer, LSTM):
        return LSTMSequence(nn.LSTM(width, layer.hidden, layer.layers, batch_first=True,
                                    bidirectional=layer.bidirectional))
    if isinstance(layer, TransformerLayer):
        return nn.TransformerEncoderLayer(width, layer.nhead, layer.ff, dropout=0.0, batch_first=True)
    raise TypeError(f"not a layer spec: {layer!r}")


def build(spec: ModelSpec) -> nn.Module:
    """The model ``spec`` describes, initialised under ``spec.seed`` (same spec, same weights)."""
    check(spec)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        widths = spec.widths()
        blocks = [make_layer(layer, width) for layer, width in zip(spec.layers, widths)]
        model = MODEL_CLASSES[spec.container](blocks)
        model.to(DTYPES[spec.dtype])
        for i, j in spec.ties:
            blocks[j].weight = blocks[i].weight
        for extra in spec.extras:
            _add_extra(model, extra)
    return model


def _add_extra(model: nn.Module, extra: Extra) -> None:
    dtype = DTYPES[extra.dtype]
    if dtype.is_floating_point or dtype.is_complex:
        value = torch.randn(extra.shape, dtype=dtype)
    elif dtype == torch.bool:
        value = torch.rand(extra.shape) > 0.5
    else:
        value = torch.randint(0, 100, extra.shape, dtype=dtype)
    if extra.layout == "transposed":
        value = value.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif extra.layout == "channels_last":
        value = value.contiguous(memory_format=torch.channels_last)
    if extra.kind == "buffer":
        model.register_buffer(extra.name, value, persistent=extra.persistent)
    else:
        model.register_parameter(extra.name, nn.Parameter(value, requires_grad=extra.kind == "parameter"))


def check(spec: ModelSpec) -> None:
    """Raise ValueError when ``spec`` is inconsistent (shapes that do not chain, bad ties, ...)."""
    if spec.container not in MODEL_CLASSES:
        raise ValueError(f"container must be one of {sorted(MODEL_CLASSES)}")
    if spec.dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}")
    if any(isinstance(layer, Embedding) for layer in spec.layers[1:]):
        raise ValueError("an Embedding can only be the first layer")
    if spec.batch * spec.length == 1 and any(isinstance(layer, BatchNorm) for layer in spec.layers):
        raise ValueError("BatchNorm needs more than one value per channel: batch * length must not be 1")
    widths = spec.widths()
    for layer, width in zip(spec.layers, widths):
        if isinstance(layer, TransformerLayer) and width % layer.nhead:
            raise ValueError(f"TransformerLayer: {width} features are not divisible by nhead={layer.nhead}")
        if isinstance(layer, Conv) and (layer.kernel % 2 == 0 or layer.dims not in (1, 2)):
            raise ValueError("Conv: kernel must be odd and dims 1 or 2")
    for i, j in spec.ties:
        shapes = (weight_shape(spec.layers[i], widths[i]), weight_shape(spec.layers[j], widths[j]))
        if not i < j or shapes[0] is None or shapes[0] != shapes[1]:
            raise ValueError(f"tie ({i}, {j}): needs two weights of one shape, got {shapes}")
    for extra in spec.extras:
        if extra.layout == "channels_last" and len(extra.shape) != 4:
            raise ValueError(f"extra {extra.name}: channels_last needs 4 dimensions")
        if extra.kind != "buffer" and not (DTYPES[extra.dtype].is_floating_point or DTYPES[extra.dtype].is_complex):
            raise ValueError(f"extra {extra.name}: a parameter must be floating point or complex")


def example_inputs(spec: ModelSpec) -> tuple[torch.Tensor]:
    """Fixed inputs for ``spec`` (token ids for an Embedding first, else a float sequence)."""
    generator = torch.Generator().manual_seed(spec.seed + 1)
    first = spec.layers[0] if spec.layers else None
    if isinstance(first, Embedding):  # spec.takes_tokens
        return (torch.randint(0, first.vocab, (spec.batch, spec.length), generator=generator),)
    return (torch.randn(spec.batch, spec.length, spec.features, generator=generator).to(DTYPES[spec.dtype]),)


def as_case(spec: ModelSpec, optimizer: str = "adam", pair: bool = False) -> Any:
    """An unregistered :class:`harness.case.Case` for ``spec``, so every format can save it.

    ``pair`` makes a two-model case (``first`` and ``second``, the second built under ``seed + 1``)
    for formats that hold several models.
    """
    from harness.case import Case

    if not pair:
        return Case(name=f"spec-{spec.digest()}", exercises=repr(spec), build=lambda: build(spec),
                    inputs=lambda: example_inputs(spec), optimizer=optimizer, seed=spec.seed, corpus=False)
    specs = {"first": spec, "second": dataclasses.replace(spec, seed=spec.seed + 1)}
    return Case(name=f"spec-pair-{spec.digest()}", exercises=repr(spec), models=tuple(specs),
                build=lambda: {name: build(s) for name, s in specs.items()},
                inputs=lambda: {name: example_inputs(s) for name, s in specs.items()},
                optimizer=optimizer, seed=spec.seed, corpus=False)


def to_code(spec: ModelSpec) -> str:
    """Python a user can paste to rebuild the model of ``spec``."""
    names = sorted({type(layer).__name__ for layer in spec.layers} | {"ModelSpec", "build"}
                   | ({"Extra"} if spec.extras else set()))
    return (f"from harness.spec import {', '.join(names)}\n\n"
            f"spec = {spec!r}\n"
            f"model = build(spec)\n")
