"""What gets saved: a case builds models with a fixed seed and trains them a little.

Each module under ``cases/`` defines its model classes at module level (so whole-model pickles
can find them again) and registers one :class:`Case`. :func:`prepare` turns a case into live
models, optimizers and schedulers after ``steps`` optimizer steps, so optimizer state is never
empty; every format saves from that one prepared object.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any, Callable, Optional, Union

import numpy
import torch
from torch import nn

from harness import compat
from harness.internal.registry import Registry

ModelsOrOne = Union[nn.Module, dict[str, nn.Module]]
InputsOrOne = Union[tuple, dict[str, tuple]]


@dataclasses.dataclass(frozen=True)
class Case:
    """A named thing to checkpoint.

    ``build`` returns one module or ``{name: module}`` (built under ``seed``); ``inputs`` returns
    the fixed example inputs for each; ``exercises`` says in a sentence what the case is for.
    ``models`` names the models ``build`` returns (one model: ``("model",)``).
    ``requires`` names optional packages (the case is skipped with the import error where one is
    missing); ``save_mode`` is the train/eval flag the models carry when saved.
    """

    name: str
    exercises: str
    build: Callable[[], ModelsOrOne]
    inputs: Callable[[], InputsOrOne]
    models: tuple[str, ...] = ("model",)
    #: "adam" | "sgd", or any factory ``params -> Optimizer`` (AdamW, Lion from a plugin, ...)
    optimizer: Union[str, Callable[[Any], torch.optim.Optimizer]] = "adam"
    #: a factory ``optimizer -> scheduler`` (CosineAnnealingLR, OneCycleLR, ...); None: StepLR(1, 0.9)
    scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None
    seed: int = 0
    requires: tuple[str, ...] = ()
    save_mode: str = "eval"
    atol: float = 1e-5
    #: small enough for the committed frozen corpus (cases/corpus/)
    corpus: bool = True
    #: only these formats (None: every applicable one); for models too big to save in all of them
    formats: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if not callable(self.optimizer) and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"case {self.name}: optimizer must be one of {sorted(OPTIMIZERS)} or a factory "
                             f"params -> torch.optim.Optimizer")
        if self.scheduler is not None and not callable(self.scheduler):
            raise ValueError(f"case {self.name}: scheduler must be a factory optimizer -> scheduler")
        if self.save_mode not in ("train", "eval"):
            raise ValueError(f"case {self.name}: save_mode must be 'train' or 'eval'")

    @property
    def resume_atol(self) -> float:
        """Tolerance for one resumed step computed by another release or device.

        Adam divides by the gradient's running RMS, so a parameter whose gradient is ~0 (a bias
        before BatchNorm, say) moves by up to ±lr on numerical noise: two releases can differ by
        2·lr there after one step. SGD has no such amplification.
        """
        if not callable(self.optimizer):
            return self.atol + (2 * LEARNING_RATES["adam"] if self.optimizer == "adam" else 0.0)
        probe = self.optimizer([nn.Parameter(torch.zeros(1))])
        adaptive = any(isinstance(probe, cls) for cls in _ADAPTIVE)
        return self.atol + (2 * float(probe.param_groups[0]["lr"]) if adaptive else 0.0)

    @property
    def optimizer_name(self) -> str:
        """The optimizer's name for records and Namespaces (a factory's function name)."""
        return self.optimizer if isinstance(self.optimizer, str) else getattr(self.optimizer, "__name__", "custom")

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        return (self.optimizer if callable(self.optimizer) else OPTIMIZERS[self.optimizer])(params)

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        if self.scheduler is not None:
            return self.scheduler(optimizer)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)

    def missing_requirement(self) -> Optional[str]:
        """None when every required package imports, else the first import failure."""
        for name in self.requires:
            _, reason = compat.import_optional(name)
            if reason:
                return reason
        return None

    def fresh_models(self) -> dict[str, nn.Module]:
        """Newly built models (as built under the seed), e.g. as targets for ``load_state_dict``.

        The first call builds a template under the seed; later calls deep-copy it, which is much
        faster than initialising a large model again (vgg16: ~0.1 s against ~2.5 s).
        """
        return copy.deepcopy(self.template())

    def models_to_fill(self) -> dict[str, nn.Module]:
        """Models for a strict ``load_state_dict`` of every model, which overwrites every tensor of their state
        dicts: the template's structure, attributes and non-persistent buffers, and each state-dict tensor
        allocated without the template's values (vgg16's 528 MB are then written once, by the load, not twice).
        A tensor whose storage it shares with another keeps the template's copy, so sharing stays as built.
        Anything that may read a value the load did not write takes :meth:`fresh_models` instead."""
        template = self.template()
        tensors = {id(t): t for model in template.values()
                   for t in [*model.parameters(), *model.buffers()]}
        storages: dict[Any, int] = {}
        for tensor in tensors.values():
            key = compat.storage_key(tensor)
            storages[key] = storages.get(key, 0) + 1
        memo: dict[int, Any] = {}
        for model in template.values():
            for tensor in model.state_dict(keep_vars=True).values():
                if isinstance(tensor, torch.Tensor) and storages.get(compat.storage_key(tensor)) == 1:
                    memo[id(tensor)] = _unfilled(tensor)
        return copy.deepcopy(template, memo)

    def template(self) -> dict[str, nn.Module]:
        """The models :meth:`fresh_models` copies, built once under the seed and shared by every caller:
        read them (a model's values as built, say), never change them; take :meth:`fresh_models` for
        models to load into, train or hand out. The case object keeps them (they go with it), not a table
        keyed by its ``id``, which a new case could reuse after this one is gone."""
        found = self.__dict__.get(_TEMPLATE)
        if found is None:
            seed_everything(self.seed)
            found = as_named(self.build(), nn.Module)
            if tuple(found) != self.models:
                raise ValueError(f"case {self.name}: build() returned {tuple(found)}, declared {self.models}")
            object.__setattr__(self, _TEMPLATE, found)  # a frozen dataclass: its fields stay as they are
        return found

    def built_template(self) -> dict[str, nn.Module]:
        """:meth:`template` where it was built already, else ``{}`` (building one reseeds the RNGs)."""
        return self.__dict__.get(_TEMPLATE) or {}

    def forget_template(self) -> None:
        """Drop the kept template (the next :meth:`template` builds it again, under the seed)."""
        self.__dict__.pop(_TEMPLATE, None)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the kept template: a process that gets the case builds its own."""
        return {k: v for k, v in self.__dict__.items() if k != _TEMPLATE}

    def example_inputs(self) -> dict[str, tuple]:
        """The fixed inputs, one tuple per model."""
        seed_everything(self.seed + 1)
        inputs = self.inputs()
        return inputs if isinstance(inputs, dict) else {"model": inputs}


LEARNING_RATES = {"adam": 1e-3, "sgd": 1e-2}


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=LEARNING_RATES["adam"])


def _sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LEARNING_RATES["sgd"], momentum=0.9)


OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {"adam": _adam, "sgd": _sgd}
#: optimizers that divide by a running gradient RMS: near-zero gradients can move a parameter by ~lr
_ADAPTIVE = tuple(getattr(torch.optim, n) for n in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad",
                                                     "RMSprop", "Adadelta") if hasattr(torch.optim, n))

#: the attribute a case keeps its built template in (:meth:`Case.template`)
_TEMPLATE = "_template"

CASES: Registry[Case] = Registry("case", "harness_cases")


def register(case: Case) -> Case:
    """Register a case; call it at import time of the case's module."""
    return CASES.register(case)


def _unfilled(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor like ``tensor`` (a Parameter stays one) whose memory is allocated, not written."""
    empty = torch.empty_like(tensor)
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(empty, requires_grad=tensor.requires_grad)
    return empty


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    numpy.random.seed(seed)
    random.seed(seed)


def as_named(value: Any, kind: type) -> dict[str, Any]:
    return {"model": value} if isinstance(value, kind) else dict(value)


@dataclasses.dataclass
class Prepared:
    """A case after ``steps`` training steps: the live objects every format saves from."""

    case: Case
    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    inputs: dict[str, tuple]
    steps: int
    loss: float
    rng_state: torch.Tensor
    numpy_rng: Any

    @property
    def single(self) -> Optional[nn.Module]:
        """The model of a one-model case, else None."""
        return next(iter(self.models.values())) if len(self.models) == 1 else None

    @property
    def one_model(self) -> nn.Module:
        """The model of a one-model case (formats that hold one model); a multi-model case raises ValueError."""
        model = self.single
        if model is None:
            raise ValueError(f"this case has {len(self.models)} models, not one")
        return model


def make_optimizers(case: Case, models: dict[str, nn.Module]) -> tuple[dict, dict]:
    """One optimizer and one scheduler per model, from the case's factories."""
    optimizers = {n: case.make_optimizer(trainable(m)) for n, m in models.items()}
    schedulers = {n: case.make_scheduler(o) for n, o in optimizers.items()}
    return optimizers, schedulers


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that take gradients (tied ones once)."""
    return [p for p in model.parameters() if p.requires_grad]


def prepare(case: Case, steps: int = 2, device: str = "cpu") -> Prepared:
    """Build ``case`` under its seed and take ``steps`` optimizer steps on ``device``.

    Models and inputs move to ``device`` before the optimizers exist, so optimizer state is
    created there, as in a real run on that device.
    """
    models = case.fresh_models()
    inputs = case.example_inputs()
    if device != "cpu":
        models = {name: model.to(device) for name, model in models.items()}
        inputs = {name: _to_device(args, torch.device(device)) for name, args in inputs.items()}
    optimizers, schedulers = make_optimizers(case, models)
    seed_everything(case.seed + 2)
    loss = 0.0
    for _ in range(steps):
        loss = train_step(models, optimizers, schedulers, inputs)
    for model in models.values():
        model.train(case.save_mode == "train")
    return Prepared(case, models, optimizers, schedulers, inputs, steps, loss,
                    torch.get_rng_state(), numpy.random.get_state())


def train_step(models: dict[str, nn.Module], optimizers: dict, schedulers: dict, inputs: dict) -> float:
    """One optimizer step for every model on its fixed inputs; returns the summed loss."""
    total = 0.0
    for name, model in models.items():
        modes = {m: m.training for m in model.modules()}
        model.train()
        optimizers[name].zero_grad()
        loss = training_loss(model(*inputs[name]))
        loss.backward()
        optimizers[name].step()
        schedulers[name].step()
        for module, mode in modes.items():
            module.training = mode
        total += float(loss.detach())
    return total


def training_loss(outputs: Any) -> torch.Tensor:
    """A deterministic scalar from any output structure: mean squares of its float leaves."""
    from harness.fingerprint import flatten

    terms = [t.abs().float().pow(2).mean() if t.is_complex() else t.float().pow(2).mean()
             for _, t in flatten(outputs) if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())]
    if not terms:
        raise ValueError("the case's forward returned no floating-point tensor to train on")
    return torch.stack(terms).sum()


def forward_outputs(models: dict[str, nn.Module], inputs: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Eval-mode outputs on the fixed inputs, flattened to ``{path: tensor}``; modes are restored."""
    from harness.fingerprint import flatten

    outputs: dict[str, Any] = {}
    for name, model in models.items():
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()
        except NotImplementedError:
            pass  # exported programs refuse eval(); they were exported in eval mode
        try:
            with torch.no_grad():
                outputs[name] = model(*_to_device(inputs[name], _device_of(model)))
        finally:
            for module, mode in modes.items():
                module.training = mode
    return {path: t.detach().cpu() for path, t in flatten(outputs) if isinstance(t, torch.Tensor)}


def clone_prepared(prepared: Prepared) -> Prepared:
    """A deep copy whose optimizers point at the copied models' parameters."""
    return copy.deepcopy(prepared)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _to_device(inputs: tuple, device: torch.device) -> tuple:
    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)
