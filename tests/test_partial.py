"""Partial loads: the independent key computation, the fixes, and the partial:<scenario> checks."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import compat
from harness.case import CASES, Case
from harness.partial import Scenario, expected, fixes
from harness.partial import run as partial_run
from tests.conftest import index, records, run_cli
from tests.plugins import partial_damage


class WithExtras(nn.Module):
    """Shared child, a None bias, a non-persistent buffer and extra state: every state_dict rule at once."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(3, 3, bias=False)
        self.again = self.shared
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_buffer("absent", None)
        self.stateful = Stateful()


class Stateful(nn.Module):
    def get_extra_state(self) -> dict:
        return {"calls": 3}

    def set_extra_state(self, state: dict) -> None:
        self.calls = state["calls"]


def test_target_walk_matches_state_dict_rules() -> None:
    model = WithExtras()
    shapes = expected.target_shapes(model)
    assert list(shapes) == list(model.state_dict())  # same keys, same order
    assert "scratch" not in shapes and "again.weight" in shapes and "stateful._extra_state" in shapes
    assert expected.non_persistent_buffers(model) == ["scratch"]


@pytest.mark.parametrize("name", [c.name for c in CASES if c.name != "compiled"])
def test_target_walk_matches_every_case(name: str) -> None:
    case = CASES.get(name)
    if case.missing_requirement():
        pytest.skip(case.missing_requirement())
    for model in case.fresh_models().values():
        assert expected.target_shapes(model) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_plan_names_missing_unexpected_and_mismatched() -> None:
    source = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).state_dict()
    target = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2), nn.Linear(2, 2))
    plan = expected.plan(source, target)
    assert plan.missing == ("2.weight", "2.bias")
    assert plan.unexpected == ()
    assert plan.mismatched == {"0.weight": ((3, 4), (5, 4)), "0.bias": ((3,), (5,)), "1.weight": ((2, 3), (2, 5))}
    assert plan.loaded == ("1.bias",)
    assert not plan.clean


def test_drop_mismatched_reports_and_leaves_the_input_alone() -> None:
    source = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).state_dict()
    keys = list(source)
    target = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 7))
    kept, dropped = fixes.drop_mismatched(source, target)
    assert dropped == {"1.weight": ((2, 3), (7, 3)), "1.bias": ((2,), (7,))}
    assert list(source) == keys and list(kept) == ["0.weight", "0.bias"]
    assert kept._metadata == source._metadata
    result = target.load_state_dict(kept, strict=False)
    assert sorted(result.missing_keys) == ["1.bias", "1.weight"]


def test_prefixes_are_detected_stripped_and_added() -> None:
    bare = nn.Sequential(nn.Linear(2, 2))
    wrapped = nn.DataParallel(bare)
    found = fixes.detect_prefix(wrapped.state_dict(), bare)
    assert found == fixes.PrefixFix("strip", "module.")
    stripped = found.apply(wrapped.state_dict())
    assert list(stripped) == list(bare.state_dict()) and "" in stripped._metadata
    assert list(wrapped.state_dict())[0].startswith("module.")  # input untouched
    assert fixes.detect_prefix(bare.state_dict(), wrapped) == fixes.PrefixFix("add", "module.")
    stacked = fixes.add_prefix(fixes.add_prefix(bare.state_dict(), "_orig_mod."), "module.")
    assert fixes.detect_prefix(stacked, bare) == fixes.PrefixFix("strip", "module._orig_mod.")
    assert fixes.detect_prefix(bare.state_dict(), bare) is None
    assert fixes.detect_prefix({"other.weight": torch.zeros(1)}, bare) is None


def test_strip_prefix_uses_pytorchs_helper_where_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = compat.consume_prefix_function()
    assert real is not None, "every supported release has consume_prefix_in_state_dict_if_present"
    monkeypatch.setattr(compat, "consume_prefix_function", lambda: lambda sd, p: calls.append(p) or real(sd, p))
    fixes.strip_prefix(collections.OrderedDict({"module.w": torch.zeros(1)}), "module.")
    assert calls == ["module."]


class Classifier(nn.Module):
    """A tiny vgg stand-in: features plus a Sequential classifier."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Linear(8, 8)
        self.classifier = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, classes))


def _toy_case() -> Case:
    return Case(name="toy", exercises="-", build=Classifier, inputs=lambda: (torch.zeros(1, 8),))


def _new_head(case: Case) -> nn.Module:
    model = Classifier()
    model.classifier[2] = nn.Linear(4, 10)
    return model


def test_size_mismatch_scenario_records_the_message_and_the_fix_works() -> None:
    scenario = Scenario("toy_head", "-", ("toy",), _new_head, fix="drop_mismatched")
    outcome = partial_run.run_scenario(scenario, Classifier().state_dict(), _toy_case())
    assert outcome.status == "pass", outcome.detail
    assert "strict=False raised as planned" in outcome.detail
    assert ("size mismatch for classifier.2.weight: copying a param with shape torch.Size([6, 4]) from checkpoint, "
            "the shape in current model is torch.Size([10, 4])") in outcome.detail
    assert "fix drop_mismatched dropped classifier.2.weight, classifier.2.bias" in outcome.detail


def test_a_wrong_plan_makes_the_scenario_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    real = partial_run.plan

    def forgets_one_missing_key(source, target):  # type: ignore[no-untyped-def]
        right = real(source, target)
        return expected.LoadPlan(right.missing[1:], right.unexpected, right.mismatched, right.loaded)

    monkeypatch.setattr(partial_run, "plan", forgets_one_missing_key)
    bigger = Scenario("toy_bigger", "-", ("toy",), lambda case: nn.Sequential(Classifier(), nn.Linear(6, 2)))
    source = nn.Sequential(Classifier()).state_dict()
    outcome = partial_run.run_scenario(bigger, source, _toy_case())
    assert outcome.status == "fail"
    assert "missing_keys differ from the plan" in outcome.detail


class WithScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.register_buffer("scale", torch.ones(3), persistent=False)


@pytest.mark.skipif(bool(compat.load_state_dict_assign() or compat.meta_device_context()),
                    reason="this release has no load_state_dict(assign=True) or meta device context")
def test_meta_assign_leaves_exactly_the_non_persistent_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = Scenario("toy_meta", "-", ("toy",), lambda case: WithScale(), assign=True)
    source = WithScale().state_dict()
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "pass", outcome.detail
    assert "2 tensors assigned without a copy" in outcome.detail and "left on meta as planned: scale" in outcome.detail
    real_load = partial_run._load
    monkeypatch.setattr(partial_run, "_load",
                        lambda target, state, strict, assign=False: real_load(target, state, strict))
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "fail" and "copied instead of assigning" in outcome.detail


def _simple_state() -> collections.OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    holder = nn.Module()
    holder.fc = nn.Linear(10, 2)
    return holder.state_dict()


def _simple_case() -> Case:
    return Case(name="toy_simple", exercises="-", build=lambda: nn.Linear(10, 2), inputs=lambda: (torch.zeros(1, 10),))


@pytest.mark.parametrize("target, words", [
    (partial_damage.HidesUnexpected, "unexpected_keys differ from the plan"),
    (partial_damage.SkipsBiasNet, "loaded values differ from the checkpoint: fc.bias"),
    (partial_damage.OmitsAKey, 'strict=True error does not name unexpected "fc.bias"'),
    (partial_damage.GarblesSizeMismatch, "error does not name size mismatch for fc.weight (2, 10)→(3, 10)"),
])
def test_misbehaving_targets_fail_in_process(target: type, words: str) -> None:
    scenario = Scenario("toy_broken", "-", ("toy_simple",), lambda case: target(),
                        fix="drop_mismatched" if target is partial_damage.GarblesSizeMismatch else None)
    outcome = partial_run.run_scenario(scenario, _simple_state(), _simple_case())
    assert outcome.status == "fail", outcome
    assert words in outcome.detail


def test_a_broken_prefix_fix_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = Scenario("toy_prefix", "-", ("toy",), lambda case: Classifier(), fix="prefix")
    source = fixes.add_prefix(Classifier().state_dict(), "module.")
    assert partial_run.run_scenario(scenario, source, _toy_case()).status == "pass"
    monkeypatch.setattr(fixes, "detect_prefix", lambda state, model: fixes.PrefixFix("strip", "_orig_mod."))
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "fail" and "the plan is still not clean" in outcome.detail
    monkeypatch.setattr(fixes, "detect_prefix", lambda state, model: None)
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "fail" and "found no known prefix" in outcome.detail


def test_a_prefix_fix_that_garbles_values_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = Scenario("toy_prefix", "-", ("toy",), lambda case: Classifier(), fix="prefix")
    source = fixes.add_prefix(Classifier().state_dict(), "module.")
    real = fixes.PrefixFix.apply

    def garbling(self, state):  # type: ignore[no-untyped-def]
        out = real(self, state)
        first = next(iter(out))
        out[first] = out[first] + 1
        return out

    monkeypatch.setattr(fixes.PrefixFix, "apply", garbling)
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "fail" and "loaded values differ" in outcome.detail


@pytest.mark.parametrize("damage, words", [
    ("drops_too_few", "drop_mismatched dropped classifier.2.weight, planned classifier.2.weight, classifier.2.bias"),
    ("drops_nothing_but_says_so", "after drop_mismatched, strict=False still raised"),
])
def test_a_broken_drop_mismatched_fix_fails(monkeypatch: pytest.MonkeyPatch, damage: str, words: str) -> None:
    real = fixes.drop_mismatched

    def broken(state, model):  # type: ignore[no-untyped-def]
        kept, dropped = real(state, model)
        if damage == "drops_too_few":
            dropped.pop("classifier.2.bias")
            return kept, dropped
        return state, dropped

    monkeypatch.setattr(fixes, "drop_mismatched", broken)
    scenario = Scenario("toy_head", "-", ("toy",), _new_head, fix="drop_mismatched")
    outcome = partial_run.run_scenario(scenario, Classifier().state_dict(), _toy_case())
    assert outcome.status == "fail", outcome
    assert words in outcome.detail


def test_strict_true_that_loads_an_unclean_plan_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = partial_run._load
    monkeypatch.setattr(partial_run, "_load", lambda target, state, strict, assign=False:
                        real(target, state, False, assign))
    bigger = Scenario("toy_bigger", "-", ("toy",), lambda case: nn.Sequential(Classifier(), nn.Linear(6, 2)))
    outcome = partial_run.run_scenario(bigger, nn.Sequential(Classifier()).state_dict(), _toy_case())
    assert outcome.status == "fail" and "strict=True loaded although" in outcome.detail


@pytest.mark.skipif(bool(compat.load_state_dict_assign() or compat.meta_device_context()),
                    reason="this release has no load_state_dict(assign=True) or meta device context")
def test_meta_assign_holds_the_reported_keys_to_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """assign=True's result is checked too: a release that reports a key wrongly fails."""
    scenario = Scenario("toy_meta", "-", ("toy",), lambda case: WithScale(), assign=True)
    source = WithScale().state_dict()
    real = partial_run._load

    def misreports(target, state, strict, assign=False):  # type: ignore[no-untyped-def]
        error, result = real(target, state, strict, assign)
        if result is not None:
            result.missing_keys.append("fc.ghost")
        return error, result

    monkeypatch.setattr(partial_run, "_load", misreports)
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome.status == "fail" and "assign=True missing_keys differ from the plan" in outcome.detail


@pytest.fixture(scope="module")
def consumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("partial")
    cases = [a for c in ("transformer", "dataparallel", "compiled", "simple", "batchnorm") for a in ("--case", c)]
    plugin = ("--plugin", "tests.plugins.partial_broken")
    produced = run_cli("produce", *plugin, "--out", str(out / "art"), *cases, "--format", "state_dict_zip")
    assert produced.returncode == 0, produced.stderr
    result = run_cli("consume", *plugin, str(out / "art"), "--results", str(out / "r.jsonl"))
    found = records(out / "r.jsonl")
    return result.returncode, {**index(found), "all": found}


@pytest.mark.slow
@pytest.mark.parametrize("case, scenario, words", [
    ("transformer", "transformer_encoder_only", "38 unexpected"),
    ("transformer", "transformer_decoder_half", "24 unexpected"),
    ("transformer", "transformer_into_smaller", "30 unexpected"),
    ("transformer", "transformer_into_bigger", "30 missing"),
    ("dataparallel", "dataparallel_into_bare", "strip 'module.' from every key"),
    ("compiled", "compiled_into_eager", "strip '_orig_mod.' from every key"),
    ("simple", "bare_into_dataparallel", "add 'module.' to every key"),
    ("batchnorm", "meta_assign", "left on meta as planned: scale"),
])
def test_scenarios_pass_in_consume(consumed: tuple[int, dict], case: str, scenario: str, words: str) -> None:
    record = consumed[1][(case, "state_dict_zip", f"partial:{scenario}")]
    if record["status"] == "skip":
        pytest.skip(record["detail"])
    assert record["status"] == "pass", record
    assert words in record["detail"]


@pytest.mark.slow
def test_scenarios_write_no_records_for_artifacts_of_other_cases(consumed: tuple[int, dict]) -> None:
    records = consumed[1]["all"]
    assert any(r["check"] == "partial:transformer_encoder_only" for r in records)
    assert not [r for r in records if (r["case"], r["check"]) == ("simple", "partial:transformer_encoder_only")]


@pytest.mark.slow
@pytest.mark.parametrize("scenario, words", [
    ("broken_hides_unexpected", "unexpected_keys differ from the plan"),
    ("broken_skips_bias", "loaded values differ from the checkpoint: fc.bias"),
    ("broken_omits_a_key", 'strict=True error does not name unexpected "fc.bias"'),
    ("broken_garbles_size_mismatch", "error does not name size mismatch for fc.weight"),
])
def test_misbehaving_targets_fail(consumed: tuple[int, dict], scenario: str, words: str) -> None:
    record = consumed[1][("simple", "state_dict_zip", f"partial:{scenario}")]
    assert record["status"] == "fail", record
    assert words in record["detail"]
    assert consumed[0] == 1  # the failures fail the run


def test_vgg16_scenarios_run_or_skip_with_the_reason() -> None:
    case = CASES.get("vgg16")
    if case.missing_requirement():
        pytest.skip(f"vgg16 needs torchvision: {case.missing_requirement()}")
    from harness.partial import SCENARIOS

    source = case.fresh_models()["model"].state_dict()
    outcome = partial_run.run_scenario(SCENARIOS.get("vgg16_new_head"), source, case)
    assert outcome.status == "pass", outcome.detail
    assert "size mismatch for classifier.6.weight" in outcome.detail


def test_partial_checks_never_modify_the_loaded_state(tmp_path: Path) -> None:
    """load_state_dict(assign=True) writes into the _metadata it is given; the harness gives it a copy."""
    source = WithScale().state_dict()
    before = {k: dict(v) for k, v in source._metadata.items()}
    if not compat.load_state_dict_assign() and not compat.meta_device_context():
        partial_run.run_scenario(Scenario("toy_meta", "-", ("toy",), lambda case: WithScale(), assign=True),
                                 source, _toy_case())
    partial_run.run_scenario(Scenario("toy_head", "-", ("toy",), lambda case: WithScale()), source, _toy_case())
    assert {k: dict(v) for k, v in source._metadata.items()} == before
