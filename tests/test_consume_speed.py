"""What makes consume fast without changing a verdict: OpenMP threads that sleep instead of spinning
(harness.omp) and partial-load targets restored in place instead of rebuilt (harness.partial.targets)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from harness import cli, omp
from harness.case import Case, seed_everything
from harness.fingerprint import hash_tensor
from harness.partial import Scenario, targets
from harness.partial import run as partial_run
from tests.conftest import REPO


def test_wait_passively_sets_the_policy_before_torch_is_imported() -> None:
    environ: dict[str, str] = {}
    assert omp.wait_passively(environ, modules={}) is True
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_wait_passively_keeps_the_users_choice() -> None:
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert omp.wait_passively(environ, modules={}) is False
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_wait_passively_does_nothing_once_torch_is_imported() -> None:
    environ: dict[str, str] = {}
    assert omp.wait_passively(environ, modules={"torch": object()}) is False
    assert environ == {}


class _Stop(Exception):
    """Ends a command line run where the test has seen enough."""


def test_the_command_line_asks_for_passive_waiting_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def build_parser() -> None:
        calls.append("build_parser")
        raise _Stop

    monkeypatch.setattr(cli, "wait_passively", lambda: calls.append("wait_passively") or True)
    monkeypatch.setattr(cli, "build_parser", build_parser)
    with pytest.raises(_Stop):
        cli.main(["list"])
    assert calls == ["wait_passively", "build_parser"]


@pytest.mark.slow
def test_a_command_runs_torch_with_passive_waiting() -> None:
    """In a fresh interpreter, the policy is in the environment before the command imports torch."""
    probe = ("import os, sys; from harness import cli; "
             "status = cli.main(['list']); print(status, os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 PASSIVE True"


# -- partial-load targets restored in place (harness.partial.targets) ----------------------------------


class Head(nn.Module):
    """A small stand-in for vgg16: features, a Sequential classifier, a BatchNorm and a non-persistent buffer."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Linear(8, 8)
        self.norm = nn.BatchNorm1d(8)
        self.classifier = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, classes))
        self.register_buffer("scale", torch.ones(3), persistent=False)


def _head_case() -> Case:
    return Case(name="toy_head_case", exercises="-", build=Head, inputs=lambda: (torch.zeros(1, 8),))


def _new_head(case: Case) -> nn.Module:
    """Like vgg16_new_head: the case's fresh model with its last layer replaced (drawn from the global RNG)."""
    model = case.fresh_models()["model"]
    model.classifier[2] = nn.Linear(4, 10)
    return model


def _values(model: nn.Module) -> dict[str, str]:
    """Every parameter and buffer (non-persistent ones too) by name, as a byte hash."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return {name: hash_tensor(tensor) for name, tensor in named}


def _built(scenario: Scenario, case: Case) -> dict[str, str]:
    """What a fresh build gives, with the global RNG where the kept target's build has it (the case's
    template built first: building it reseeds the RNG)."""
    case.template()
    seed_everything(7)
    return _values(scenario.build_target(case))


def _fresh(scenario: Scenario, case: Case) -> nn.Module:
    seed_everything(7)
    return targets.fresh(scenario, case)


def _scribble(model: nn.Module) -> None:
    """What a partial run does to a target, and worse: loads, in-place writes, a write through ``.data``."""
    model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items() if v.is_floating_point()},
                          strict=False)
    with torch.no_grad():
        model.scale.mul_(5)
        model.norm.num_batches_tracked.add_(3)
    model.features.bias.data.copy_(torch.full((8,), 9.0))


@pytest.fixture(autouse=True)
def _no_kept_targets() -> Iterator[None]:
    targets.forget()
    yield
    targets.forget()


def test_a_kept_target_comes_back_bit_identical_to_a_fresh_build() -> None:
    case, scenario = _head_case(), Scenario("toy_new_head", "-", ("toy_head_case",), _new_head)
    reference = _built(scenario, case)
    template = _values(case.template()["model"])
    target = _fresh(scenario, case)
    assert _values(target) == reference
    _scribble(target)
    assert sorted(k for k, v in _values(target).items() if v != reference[k]) == sorted(reference)
    again = targets.fresh(scenario, case)
    assert again is target  # restored in place, not built again
    assert _values(again) == reference
    assert _values(case.template()["model"]) == template


def test_skipping_the_restore_hands_out_the_scribbled_target(monkeypatch: pytest.MonkeyPatch) -> None:
    case, scenario = _head_case(), Scenario("toy_new_head", "-", ("toy_head_case",), _new_head)
    reference = _built(scenario, case)
    _scribble(_fresh(scenario, case))
    monkeypatch.setattr(targets, "restore", lambda kept: None)
    again = targets.fresh(scenario, case)
    assert sorted(k for k, v in _values(again).items() if v != reference[k]) == sorted(reference)


def _replace_layer(model: nn.Module) -> None:
    model.features = nn.Linear(8, 8)


def _reassign_parameter(model: nn.Module) -> None:
    model.features.weight = nn.Parameter(model.features.weight.detach().clone())


def _swap_data(model: nn.Module) -> None:
    model.features.weight.data = torch.zeros(8, 8)


def _freeze(model: nn.Module) -> None:
    model.features.weight.requires_grad_(False)


def _set_attribute(model: nn.Module) -> None:
    model.norm.momentum = 0.5


def _add_buffer(model: nn.Module) -> None:
    model.register_buffer("extra", torch.zeros(1))


def _make_persistent(model: nn.Module) -> None:
    model._non_persistent_buffers_set.discard("scale")


def _train(model: nn.Module) -> None:
    model.train(not model.training)


class _OtherLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -super().forward(x)


def _swap_class(model: nn.Module) -> None:
    model.features.__class__ = _OtherLinear  # same object, same tensors: only its type tells


def _rewrap_parameter(model: nn.Module) -> None:
    model.features.weight = nn.Parameter(model.features.weight.data)  # same storage, a new Parameter object


@pytest.mark.parametrize("change", [_replace_layer, _reassign_parameter, _swap_data, _freeze, _set_attribute,
                                    _add_buffer, _make_persistent, _train, _swap_class, _rewrap_parameter])
def test_a_target_changed_beyond_its_values_is_built_again(change: Any) -> None:
    case, scenario = _head_case(), Scenario("toy_new_head", "-", ("toy_head_case",), _new_head)
    reference = _built(scenario, case)
    target = _fresh(scenario, case)
    change(target)
    again = _fresh(scenario, case)
    assert again is not target
    assert _values(again) == reference
    assert [m.training for m in again.modules()] == [m.training for m in scenario.build_target(case).modules()]


class ExtraState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.note = {"loads": 0}

    def get_extra_state(self) -> dict:
        return self.note

    def set_extra_state(self, state: dict) -> None:
        self.note = {"loads": state["loads"] + 1}


def test_targets_whose_restore_would_not_be_enough_are_built_every_time() -> None:
    case = _head_case()
    for build in (lambda c: ExtraState(), lambda c: nn.Linear(2, 2, device="meta")):
        scenario = Scenario("toy_unkept", "-", ("toy_head_case",), build)
        first = targets.fresh(scenario, case)
        assert not targets.keepable(first)
        assert targets.fresh(scenario, case) is not first
    assert targets.keepable(nn.Linear(2, 2)) and targets.keepable(Head())


def test_built_values_are_read_from_the_template_where_identical_else_cloned() -> None:
    case, scenario = _head_case(), Scenario("toy_new_head", "-", ("toy_head_case",), _new_head)
    target = targets.fresh(scenario, case)
    values = targets.pristine(target, case)
    template = {t.data_ptr() for t in targets.tensors(case.template()["model"])}
    named = {id(t): name for name, t in list(target.named_parameters()) + list(target.named_buffers())}
    names = [named[id(t)] for t in targets.tensors(target)]
    shared = [name for name, value in zip(names, values) if value.data_ptr() in template]
    assert len(values) == len(names) == 12
    assert sorted(set(names) - set(shared)) == ["classifier.2.bias", "classifier.2.weight"]
    assert all(value.data_ptr() != tensor.data_ptr() for value, tensor in zip(values, targets.tensors(target)))


def test_without_a_built_template_every_value_is_a_clone_and_no_template_is_built() -> None:
    case = _head_case()
    model = Head()
    values = targets.pristine(model, case)
    assert case.built_template() == {}
    assert [hash_tensor(v) for v in values] == [hash_tensor(t) for t in targets.tensors(model)]
    assert all(v.data_ptr() != t.data_ptr() for v, t in zip(values, targets.tensors(model)))


def test_the_least_recently_used_target_is_dropped_beyond_the_limit() -> None:
    case = _head_case()
    scenarios = [Scenario(f"toy_{i}", "-", ("toy_head_case",), lambda c: nn.Linear(2, 2))
                 for i in range(targets.KEPT + 1)]
    first = [targets.fresh(s, case) for s in scenarios[:targets.KEPT]]
    assert targets.fresh(scenarios[0], case) is first[0]  # now the most recent
    targets.fresh(scenarios[-1], case)  # one too many: drops scenarios[1]'s
    assert targets.fresh(scenarios[1], case) is not first[1]
    assert targets.fresh(scenarios[0], case) is first[0]


def test_scenarios_and_cases_do_not_share_targets() -> None:
    case, other = _head_case(), _head_case()
    build = lambda c: nn.Linear(2, 2)  # noqa: E731
    one = Scenario("toy_same", "-", ("toy_head_case",), build)
    two = Scenario("toy_same", "-", ("toy_head_case",), build)
    target = targets.fresh(one, case)
    assert targets.fresh(two, case) is not target
    assert targets.fresh(one, other) is not target
    assert targets.fresh(one, case) is target


def test_a_scenario_run_builds_its_target_once_and_keeps_its_verdicts() -> None:
    built: list[nn.Module] = []

    def counted(case: Case) -> nn.Module:
        built.append(_new_head(case))
        return built[-1]

    case = _head_case()
    scenario = Scenario("toy_counted", "-", ("toy_head_case",), counted, fix="drop_mismatched")
    source = Head().state_dict()
    outcomes = [partial_run.run_scenario(scenario, source, case) for _ in range(3)]
    assert len(built) == 1
    assert [o.status for o in outcomes] == ["pass"] * 3 and len({o.detail for o in outcomes}) == 1
    assert "fix drop_mismatched dropped classifier.2.weight, classifier.2.bias" in outcomes[0].detail
    targets.forget()
    assert partial_run.run_scenario(scenario, source, case) == outcomes[0] and len(built) == 2


# -- consume --jobs N: optional packages imported once, in the workers' server ---------------------------


def test_the_server_preload_imports_each_optional_package_through_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' server imports ``harness._worker_preload``: each optional package goes through
    ``compat.import_optional``, which turns any error (torchvision's RuntimeError beside a mismatched torch)
    into a reason, so the server's preload, which survives an ImportError only, never dies of it."""
    import importlib
    import multiprocessing
    import sys

    from harness import compat, consume_pool

    asked: list[str] = []
    monkeypatch.setattr(compat, "import_optional", lambda name: (asked.append(name), (None, "RuntimeError"))[1])
    monkeypatch.delitem(sys.modules, "harness._worker_preload", raising=False)
    module = importlib.import_module("harness._worker_preload")
    assert asked == ["torchvision"] == list(module.OPTIONAL_PRELOAD)
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        consume_pool._context()
        assert "harness._worker_preload" in forkserver._forkserver._preload_modules  # type: ignore[attr-defined]


def test_tensors_yields_each_tensor_once_and_no_empty_slot() -> None:
    """A bias-less layer leaves a None slot; tied weights are one tensor: restore copies each exactly once."""
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    found = list(targets.tensors(model))
    assert [id(t) for t in found] == [id(model[0].weight), id(model[1].bias)]
