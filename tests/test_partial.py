"""Partial loads: the independent key computation, the fixes, and the partial:<scenario> checks."""

from __future__ import annotations

import collections
import copy
from pathlib import Path
from typing import Any

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
    before = {k: dict(v) for k, v in source._metadata.items()}
    result = target.load_state_dict(kept, strict=False)
    assert sorted(result.missing_keys) == ["1.bias", "1.weight"]
    with torch.device("meta"):
        meta_target = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 7))
    meta_target.load_state_dict(fixes.drop_mismatched(source, meta_target)[0], strict=False, assign=True)
    assert {k: dict(v) for k, v in source._metadata.items()} == before, \
        "assign=True writes into the _metadata it is handed: the fix's output must have its own"


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
    plan = ("plan: 0 loaded, 6 missing (features.weight, features.bias, classifier.0.weight, +3), 6 unexpected "
            "(module.features.weight, module.features.bias, module.classifier.0.weight, +3) | fix: prefix")
    monkeypatch.setattr(fixes, "detect_prefix", lambda state, model: fixes.PrefixFix("strip", "_orig_mod."))
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome == partial_run.Outcome("fail", "after strip '_orig_mod.' from every key the plan is still not "
                                                  "clean: " + plan[len("plan: "):-len(" | fix: prefix")] + " | " + plan)
    monkeypatch.setattr(fixes, "detect_prefix", lambda state, model: None)
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome == partial_run.Outcome("fail", "detect_prefix found no known prefix that makes the keys fit | "
                                                  + plan)


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
    assert outcome == partial_run.Outcome("fail", "strict=True loaded although the plan has missing, unexpected or "
                                                  "mismatched keys | plan: 6 loaded, 2 missing (1.weight, 1.bias) | "
                                                  "fix: none needed")


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


# -- the registered scenarios in-process: exact accounts, the fixes' fallbacks ---------------------


def _registered(name: str) -> Scenario:
    from harness.partial import SCENARIOS

    return SCENARIOS.get(name)


def _first_three(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f", +{len(keys) - 3}" if len(keys) > 3 else "")


def _layer_keys(side: str, layer: int) -> list[str]:
    """The state_dict keys of one nn.TransformerEncoder/DecoderLayer of the transformer case, in order."""
    from harness_cases.transformer import decoder_stack, encoder_stack

    stack = encoder_stack(layers=1) if side == "encoder" else decoder_stack(layers=1)
    return [f"{side}.layers.{layer}.{k[len('layers.0.'):]}" for k in stack.state_dict()]


@pytest.fixture(scope="module")
def transformer_source() -> collections.OrderedDict[str, torch.Tensor]:
    """The transformer case's state_dict as produce saves it (built under the case's seed)."""
    return CASES.get("transformer").fresh_models()["model"].state_dict()


@pytest.mark.parametrize("scenario, loaded, side, layers, missing", [
    ("transformer_encoder_only", 25, "decoder", (0, 1), False),
    ("transformer_decoder_half", 39, "encoder", (0, 1), False),
    ("transformer_into_smaller", 33, "", (1,), False),
    ("transformer_into_bigger", 63, "", (2,), True),
])
def test_transformer_scenarios_report_exactly_the_planned_keys(
        transformer_source: collections.OrderedDict[str, torch.Tensor], scenario: str, loaded: int, side: str,
        layers: tuple[int, ...], missing: bool) -> None:
    """Each transformer target, built by the registered scenario, leaves exactly the other half (or the
    extra layer) out: the account names the keys in state_dict order and counts the loaded values."""
    sides = (side,) if side else ("encoder", "decoder")
    keys = [k for s in sides for n in layers for k in _layer_keys(s, n)]
    if side == "decoder":
        keys += ["out.weight", "out.bias"]
    outcome = partial_run.run_scenario(_registered(scenario), transformer_source, CASES.get("transformer"))
    kind = "missing" if missing else "unexpected"
    found = f"{len(keys)} missing/0 unexpected" if missing else f"0 missing/{len(keys)} unexpected"
    assert outcome == partial_run.Outcome("pass", (
        f"plan: {loaded} loaded, {len(keys)} {kind} ({_first_three(keys)}) | strict=True raised naming every key | "
        f"strict=False reported {found} as planned, {loaded} values bit-identical, missing ones untouched"))


def test_transformer_halves_compute_what_the_whole_model_computes(
        transformer_source: collections.OrderedDict[str, torch.Tensor]) -> None:
    """The encoder-only model and the decoder half, loaded from the whole model's checkpoint, give the
    whole model's encoder memory and output (the same layers under the same names, in eval mode)."""
    from harness.partial.scenarios.transformer_halves import DecoderHalf, EncoderOnly
    from harness_cases.transformer import Seq2Seq

    whole, encoder, decoder = Seq2Seq().eval(), EncoderOnly().eval(), DecoderHalf().eval()
    whole.load_state_dict(transformer_source)
    encoder.load_state_dict(transformer_source, strict=False)
    decoder.load_state_dict(transformer_source, strict=False)
    src, tgt = torch.randint(0, 40, (2, 9)), torch.randint(0, 40, (2, 7))
    with torch.no_grad():
        memory = whole.encoder(whole.embed(src))
        assert torch.equal(encoder(src), memory)
        assert torch.equal(decoder(tgt, memory), whole(src, tgt))


@pytest.mark.parametrize("sizes", [{"layers": 1}, {"vocab": 11, "dim": 8, "heads": 2, "layers": 3}])
def test_transformer_halves_mirror_seq2seq_at_any_size(sizes: dict[str, int]) -> None:
    """Each half holds exactly the whole model's keys and shapes of its side, whatever the sizes."""
    from harness.partial.scenarios.transformer_halves import DecoderHalf, EncoderOnly
    from harness_cases.transformer import Seq2Seq

    whole = expected.target_shapes(Seq2Seq(**sizes))
    for half, sides in ((EncoderOnly, ("embed.", "encoder.")), (DecoderHalf, ("embed.", "decoder.", "out."))):
        assert expected.target_shapes(half(**sizes)) == {k: v for k, v in whole.items() if k.startswith(sides)}


class _Wrapping(nn.Module):
    """A wrapper that keeps its model under ``attribute`` (DataParallel: module, torch.compile: _orig_mod)."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.add_module(attribute, nn.Linear(3, 2))


def _wrapping_case(name: str, attribute: str) -> Case:
    return Case(name=name, exercises="-", build=lambda: _Wrapping(attribute), inputs=lambda: (torch.zeros(1, 3),))


@pytest.mark.parametrize("scenario, attribute", [
    ("dataparallel_into_bare", "module"),
    ("compiled_into_eager", "_orig_mod"),
])
def test_prefix_scenarios_strip_the_wrappers_prefix(scenario: str, attribute: str) -> None:
    """The bare target is the model inside the wrapper (torch.compile's stand-in: a module whose child is
    ``_orig_mod``, which is all the compiled case's state_dict shows)."""
    case = _wrapping_case(f"toy_{attribute}", attribute)
    bare = _registered(scenario).build_target(case)
    assert type(bare) is nn.Linear and list(bare.state_dict()) == ["weight", "bias"]
    outcome = partial_run.run_scenario(_registered(scenario), case.fresh_models()["model"].state_dict(), case)
    assert outcome == partial_run.Outcome("pass", (
        f"plan: 0 loaded, 2 missing (weight, bias), 2 unexpected ({attribute}.weight, {attribute}.bias) | "
        f"strict=True raised naming every key | fix detected: strip '{attribute}.' from every key → strict=True "
        f"loads, values bit-identical | strict=False reported 2 missing/2 unexpected as planned, 0 values "
        f"bit-identical, missing ones untouched"))


def test_bare_target_of_a_model_without_a_wrapper_is_an_error() -> None:
    case = Case(name="toy_plain", exercises="-", build=lambda: nn.Linear(3, 2), inputs=lambda: (torch.zeros(1, 3),))
    with pytest.raises(TypeError) as raised:
        _registered("dataparallel_into_bare").build_target(case)
    assert str(raised.value) == "case toy_plain: Linear wraps no module"


class _VggLike(nn.Module):
    """vgg16's classifier layout (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear(4096, classes)),
    small: what the vgg16 scenarios change is the head at classifier[6]."""

    def __init__(self, classifier: type = nn.Sequential) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1)
        self.classifier = classifier(nn.Linear(2, 4096), nn.ReLU(), nn.Dropout(), nn.Identity(), nn.ReLU(),
                                     nn.Dropout(), nn.Linear(4096, 3))


class _NotSequential(nn.Module):
    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


def _vgg_like_case(classifier: type = nn.Sequential) -> Case:
    return Case(name="vgg16", exercises="-", build=lambda: _VggLike(classifier),
                inputs=lambda: (torch.zeros(1, 3, 4, 4),))


def test_vgg16_new_head_replaces_classifier_6_and_drops_the_mismatch() -> None:
    case = _vgg_like_case()
    source = case.fresh_models()["model"].state_dict()
    target = _registered("vgg16_new_head").build_target(case)
    assert expected.target_shapes(target)["classifier.6.weight"] == (10, 4096)
    assert list(expected.target_shapes(target)) == list(source)
    outcome = partial_run.run_scenario(_registered("vgg16_new_head"), source, case)
    mismatch = ("size mismatch for classifier.6.weight: copying a param with shape torch.Size([3, 4096]) from "
                "checkpoint, the shape in current model is torch.Size([10, 4096]). size mismatch for "
                "classifier.6.bias: copying a param with shape torch.Size([3]) from checkpoint, the shape in "
                "current model is torch.Size([10]).")
    assert outcome == partial_run.Outcome("pass", (
        "plan: 4 loaded, 2 size-mismatched (classifier.6.weight, classifier.6.bias) | "
        "strict=True raised naming every key | fix drop_mismatched dropped classifier.6.weight, classifier.6.bias "
        "→ strict=False loads, they keep the model's init | strict=False raised as planned: Error(s) in loading "
        f"state_dict for _VggLike: {mismatch}"))


def test_vgg16_added_linear_only_adds_missing_keys() -> None:
    case = _vgg_like_case()
    target = _registered("vgg16_added_linear").build_target(case)
    shapes = expected.target_shapes(target)
    assert list(shapes)[-2:] == ["classifier.add_linear.weight", "classifier.add_linear.bias"]
    assert shapes["classifier.add_linear.weight"] == (10, 1000) and shapes["classifier.add_linear.bias"] == (10,)
    outcome = partial_run.run_scenario(_registered("vgg16_added_linear"), case.fresh_models()["model"].state_dict(),
                                       case)
    assert outcome == partial_run.Outcome("pass", (
        "plan: 6 loaded, 2 missing (classifier.add_linear.weight, classifier.add_linear.bias) | strict=True raised "
        "naming every key | strict=False reported 2 missing/0 unexpected as planned, 6 values bit-identical, "
        "missing ones untouched"))


@pytest.mark.parametrize("scenario", ["vgg16_new_head", "vgg16_added_linear"])
def test_vgg16_scenarios_need_a_sequential_classifier(scenario: str) -> None:
    # from its start only: pytest rewrites the harness's asserts where harness is installed (an editable
    # install's egg-info beside it), and that appends the compared expression to the message
    with pytest.raises(AssertionError, match=r"^torchvision's VGG keeps its head in a Sequential"):
        _registered(scenario).build_target(_vgg_like_case(_NotSequential))


def _wrapped_state(prefix: str) -> collections.OrderedDict[str, torch.Tensor]:
    """A wrapper's state_dict: every key under ``prefix`` but a root buffer and a head beside the wrapped
    model; _metadata for each module."""
    wrapper = nn.Module()
    wrapper.add_module(prefix.rstrip("."), nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    wrapper.head = nn.Linear(1, 1)
    wrapper.register_buffer("count", torch.zeros(1))
    return wrapper.state_dict()


def _metadata(state: Any) -> list[tuple[str, dict]]:
    return [(k, dict(v)) for k, v in state._metadata.items()]


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "blockX."])
def test_strip_prefix_without_pytorchs_helper_gives_what_the_helper_gives(monkeypatch: pytest.MonkeyPatch,
                                                                          prefix: str) -> None:
    """Releases without consume_prefix_in_state_dict_if_present get the same keys, values and _metadata
    (the wrapper's own entry becomes the root's), in the input's order (the helper moves each renamed key
    to the end); the input keeps its own."""
    state = _wrapped_state(prefix)
    keys, metadata = list(state), _metadata(state)
    stripped = ["count", "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                "1.num_batches_tracked", "head.weight", "head.bias"]
    helped = fixes.strip_prefix(state, prefix)
    assert list(state) == keys and _metadata(state) == metadata
    assert sorted(helped) == sorted(stripped) and sorted(helped._metadata) == ["", "0", "1", "head"]
    monkeypatch.setattr(compat, "consume_prefix_function", lambda: None)
    fallback = fixes.strip_prefix(state, prefix)
    assert list(fallback) == stripped and all(fallback[k] is helped[k] for k in helped)
    assert [k for k, _ in _metadata(fallback)] == ["", "0", "1", "head"]
    assert dict(_metadata(fallback)) == dict(_metadata(helped)) and fallback._metadata[""] == metadata[1][1]
    assert list(state) == keys and _metadata(state) == metadata
    plain = fixes.strip_prefix(dict(state), prefix)
    assert list(plain) == stripped and not hasattr(plain, "_metadata")


def test_strip_prefix_leaves_the_inputs_metadata_alone() -> None:
    """PyTorch's helper renames _metadata in place: strip_prefix hands it a copy."""
    state = _wrapped_state("module.")
    before = _metadata(state)
    stripped = fixes.strip_prefix(state, "module.")
    assert _metadata(state) == before and stripped._metadata is not state._metadata
    assert all(stripped._metadata[k] is not state._metadata["module." + k] for k in ("0", "1"))


def test_data_ptr_is_the_address_of_the_first_element() -> None:
    """Where a tensor starts in memory, its storage offset included (a view into a flat buffer)."""
    flat = torch.arange(10, dtype=torch.float64)
    view = flat[3:7]
    assert partial_run._data_ptr(view) == view.data_ptr() == flat.data_ptr() + 3 * 8
    assert partial_run._data_ptr(flat) == flat.data_ptr()


def test_meta_assign_is_unavailable_when_either_piece_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = _registered("meta_assign")
    monkeypatch.setattr(compat, "load_state_dict_assign", lambda: "no assign here")
    assert scenario.unavailable() == "no assign here"
    monkeypatch.setattr(compat, "load_state_dict_assign", lambda: None)
    monkeypatch.setattr(compat, "meta_device_context", lambda: "no meta context here")
    assert scenario.unavailable() == "no meta context here"


_ASSIGN = pytest.mark.skipif(bool(compat.load_state_dict_assign() or compat.meta_device_context()),
                             reason="this release has no load_state_dict(assign=True) or meta device context")
_WRITES = "; it writes assign_to_params_buffers into the given state_dict's _metadata"


@_ASSIGN
def test_meta_assign_accounts_for_every_tensor() -> None:
    """(The transformer case is left to the slow tier: nn.Embedding's init on the meta device imports
    torch._refs, seconds in a fresh process.)"""
    case = CASES.get("batchnorm")
    outcome = partial_run.run_scenario(_registered("meta_assign"), case.fresh_models()["model"].state_dict(), case)
    assert outcome == partial_run.Outcome("pass", "assign=True into a meta model: 14 tensors assigned without a copy; "
                                                  "left on meta as planned: scale (not in the checkpoint: re-create "
                                                  "after loading)" + _WRITES)


@_ASSIGN
def test_meta_assign_of_a_state_without_metadata_writes_nothing_into_it() -> None:
    """A plain dict has no _metadata for assign=True to write into: the account says nothing about it."""
    scenario = Scenario("toy_meta", "-", ("toy",), lambda case: WithScale(), assign=True)
    outcome = partial_run.run_scenario(scenario, dict(WithScale().state_dict()), _toy_case())
    assert outcome == partial_run.Outcome("pass", "assign=True into a meta model: 2 tensors assigned without a copy; "
                                                  "left on meta as planned: scale (not in the checkpoint: re-create "
                                                  "after loading)")
    assert partial_run.metadata_written_by_assign(WithScale, dict(WithScale().state_dict())) == []


@_ASSIGN
def test_meta_assign_with_an_unexpected_key_still_reports_what_it_writes() -> None:
    """The probe loads with strict=False: an unexpected key does not hide what assign=True writes."""
    scenario = Scenario("toy_meta", "-", ("toy",), lambda case: WithScale(), assign=True)
    source = WithScale().state_dict()
    source["ghost"] = torch.zeros(1)
    outcome = partial_run.run_scenario(scenario, source, _toy_case())
    assert outcome == partial_run.Outcome("pass", "assign=True into a meta model: 2 tensors assigned without a copy; "
                                                  "left on meta as planned: scale (not in the checkpoint: re-create "
                                                  "after loading)" + _WRITES)
    assert partial_run.metadata_written_by_assign(WithScale, source) == ["assign_to_params_buffers"]


class _Nested(nn.Module):
    """A non-persistent buffer one level down, beside an empty child slot."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = WithScale()
        self.add_module("empty", None)
        self.register_buffer("steps", torch.zeros(1), persistent=False)


def test_non_persistent_buffers_are_found_at_every_depth() -> None:
    assert expected.non_persistent_buffers(_Nested()) == ["steps", "inner.scale"]
    assert expected.non_persistent_buffers(nn.Sequential(_Nested()), "net.") == ["net.0.steps", "net.0.inner.scale"]


@pytest.mark.parametrize("count, words", [(1, "k0"), (3, "k0, k1, k2"), (4, "k0, k1, k2 (+1)"),
                                          (7, "k0, k1, k2 (+4)")])
def test_key_lists_name_three_and_count_the_rest(count: int, words: str) -> None:
    assert partial_run._keys(f"k{i}" for i in range(count)) == words


def test_stacked_adds_are_found_in_wrapping_order() -> None:
    """DataParallel around a compiled model: '_orig_mod.' is added first, 'module.' in front of it."""
    bare = nn.Sequential(nn.Linear(2, 2))
    outer = nn.Module()
    outer.module = nn.Module()
    outer.module._orig_mod = bare
    assert fixes.detect_prefix(bare.state_dict(), outer) == fixes.PrefixFix("add", "module._orig_mod.")
    assert fixes.PrefixFix("add", "module._orig_mod.").describe() == "add 'module._orig_mod.' to every key"
    assert fixes.PrefixFix("strip", "module.").describe() == "strip 'module.' from every key"


@pytest.mark.parametrize("depth, found", [(9, True), (10, False)])
def test_stacked_prefixes_are_searched_to_64_characters(depth: int, found: bool) -> None:
    """The search stops once the prefix found so far is 64 characters long (eight 8-character prefixes)."""
    bare = nn.Linear(2, 2)
    state = bare.state_dict()
    for _ in range(depth):
        state = fixes.add_prefix(state, "block_0.")
    fix = fixes.detect_prefix(state, bare, prefixes=("block_0.",))
    assert fix == (fixes.PrefixFix("strip", "block_0." * depth) if found else None)


@pytest.mark.parametrize("prefix", ["module.", "blockX."])
def test_add_prefix_gives_the_wrappers_metadata(prefix: str) -> None:
    """Each entry under the prefix, the root's under the wrapper's attribute name; the input keeps its own."""
    bare = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    state = bare.state_dict()
    before = _metadata(state)
    added = fixes.add_prefix(state, prefix)
    name = prefix[:-1]
    assert list(added) == [prefix + k for k in state]
    assert _metadata(added) == [(name, before[0][1]), (f"{name}.0", before[1][1]), (f"{name}.1", before[2][1])]
    assert _metadata(state) == before and added._metadata[name] is not state._metadata[""]
    plain = fixes.add_prefix(dict(state), prefix)
    assert list(plain) == list(added) and not hasattr(plain, "_metadata")


class _DropsABias(nn.Module):
    """Loads everything but ``fc.bias``, so that a strict load raises although the plan is clean."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 2)
        self.register_buffer("scale", torch.ones(2), persistent=False)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        state = collections.OrderedDict((k, v) for k, v in state_dict.items() if k != "fc.bias")
        return super().load_state_dict(state, strict=strict, **kwargs)


def test_a_prefix_fix_that_still_fails_a_strict_load_fails() -> None:
    scenario = Scenario("toy_prefix", "-", ("toy",), lambda case: _DropsABias(), fix="prefix")
    source = fixes.add_prefix(_simple_state(), "module.")
    outcome = partial_run.run_scenario(scenario, source, _simple_case())
    assert outcome == partial_run.Outcome("fail", (
        "after strip 'module.' from every key strict=True raised: Error(s) in loading state_dict for _DropsABias: "
        "Missing key(s) in state_dict: \"fc.bias\". | plan: 0 loaded, 2 missing (fc.weight, fc.bias), 2 unexpected "
        "(module.fc.weight, module.fc.bias) | fix: prefix"))


def test_a_prefix_fix_leaves_keys_without_the_prefix_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripping renames only the keys that carry the prefix; the values are checked under those names."""
    holder = nn.Module()
    holder.fc = nn.Linear(10, 2)
    holder.register_buffer("count", torch.zeros(1))
    source = fixes.add_prefix(holder.state_dict(), "module.")
    source["count"] = source.pop("module.count")
    monkeypatch.setattr(fixes, "detect_prefix", lambda state, model: fixes.PrefixFix("strip", "module."))
    scenario = Scenario("toy_prefix", "-", ("toy",), lambda case: copy.deepcopy(holder), fix="prefix")
    outcome = partial_run.run_scenario(scenario, source, _simple_case())
    assert outcome.status == "pass", outcome
    assert "fix detected: strip 'module.' from every key → strict=True loads, values bit-identical" in outcome.detail


def test_a_drop_mismatched_that_drops_more_is_caught_by_the_missing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fixes.drop_mismatched

    def drops_one_more(state, model):  # type: ignore[no-untyped-def]
        kept, dropped = real(state, model)
        kept.pop("features.bias")
        return kept, dropped

    monkeypatch.setattr(fixes, "drop_mismatched", drops_one_more)
    scenario = Scenario("toy_head", "-", ("toy",), _new_head, fix="drop_mismatched")
    outcome = partial_run.run_scenario(scenario, Classifier().state_dict(), _toy_case())
    assert outcome.status == "fail", outcome
    assert outcome.detail.startswith("missing_keys after drop_mismatched differ from the plan: reported but not "
                                     "planned features.bias; planned but not reported - | plan: ")


def _meta(target: Any = WithScale) -> Scenario:
    return Scenario("toy_meta", "-", ("toy",), lambda case: target(), assign=True)


@_ASSIGN
def test_meta_assign_with_nothing_left_on_meta_says_so() -> None:
    outcome = partial_run.run_scenario(_meta(Classifier), Classifier().state_dict(), _toy_case())
    assert outcome == partial_run.Outcome("pass", "assign=True into a meta model: 6 tensors assigned without a copy; "
                                                  "nothing left on meta" + _WRITES)


@_ASSIGN
def test_meta_assign_names_everything_it_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partial_run, "metadata_written_by_assign", lambda factory, state: ["first", "second"])
    outcome = partial_run.run_scenario(_meta(Classifier), Classifier().state_dict(), _toy_case())
    assert outcome.detail.endswith("; nothing left on meta; it writes first, second into the given state_dict's "
                                   "_metadata"), outcome


@_ASSIGN
def test_meta_assign_that_raises_on_a_clean_plan_fails() -> None:
    """A clean plan loads strictly: a load that then misses a key raises, and the message says so."""
    outcome = partial_run.run_scenario(_meta(_DropsABias), _simple_state(), _simple_case())
    assert outcome == partial_run.Outcome("fail", (
        "assign=True raised: Error(s) in loading state_dict for _DropsABias: Missing key(s) in state_dict: "
        "\"fc.bias\". | plan: 2 loaded | fix: none needed"))


@_ASSIGN
def test_meta_assign_holds_the_unexpected_keys_to_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    real = partial_run._load

    def hides_unexpected(target, state, strict, assign=False):  # type: ignore[no-untyped-def]
        error, result = real(target, state, strict, assign)
        if result is not None:
            result.unexpected_keys.clear()
        return error, result

    monkeypatch.setattr(partial_run, "_load", hides_unexpected)
    source = WithScale().state_dict()
    source["ghost"] = torch.zeros(1)
    outcome = partial_run.run_scenario(_meta(), source, _toy_case())
    assert outcome == partial_run.Outcome("fail", "assign=True unexpected_keys differ from the plan: reported but not "
                                                  "planned -; planned but not reported ghost | plan: 2 loaded, "
                                                  "1 unexpected (ghost) | fix: none needed")


@_ASSIGN
def test_meta_assign_that_loses_requires_grad_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = partial_run._load

    def freezes(target, state, strict, assign=False):  # type: ignore[no-untyped-def]
        error, result = real(target, state, strict, assign)
        target.fc.weight.requires_grad_(False)
        return error, result

    monkeypatch.setattr(partial_run, "_load", freezes)
    outcome = partial_run.run_scenario(_meta(), WithScale().state_dict(), _toy_case())
    assert outcome == partial_run.Outcome("fail", "assign=True changed requires_grad of fc.weight | plan: 2 loaded | "
                                                  "fix: none needed")


@_ASSIGN
@pytest.mark.parametrize("target, planned, words", [
    (WithScale, [], "left on meta: scale; planned (non-persistent buffers, missing keys): nothing"),
    (Classifier, ["ghost"], "left on meta: nothing; planned (non-persistent buffers, missing keys): ghost"),
])
def test_meta_assign_holds_what_is_left_on_meta_to_the_plan(monkeypatch: pytest.MonkeyPatch, target: type,
                                                            planned: list, words: str) -> None:
    monkeypatch.setattr(partial_run, "non_persistent_buffers", lambda model: planned)
    outcome = partial_run.run_scenario(_meta(target), target().state_dict(), _toy_case())
    assert outcome.status == "fail" and outcome.detail.startswith(words + " | plan: "), outcome


class _SharedChildren(nn.Module):
    """The same Linear and BatchNorm under two names each: every parameter and buffer has two keys."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.fc_again = self.fc
        self.norm = nn.BatchNorm1d(2)
        self.norm_again = self.norm


@_ASSIGN
def test_meta_assign_accounts_for_shared_parameters_and_buffers_under_each_name() -> None:
    outcome = partial_run.run_scenario(_meta(_SharedChildren), _SharedChildren().state_dict(), _toy_case())
    assert outcome == partial_run.Outcome("pass", "assign=True into a meta model: 14 tensors assigned without a copy; "
                                                  "nothing left on meta" + _WRITES)


def test_plan_descriptions_name_three_keys_of_each_kind_and_count_the_rest() -> None:
    three, four = ("a", "b", "c"), ("w", "x", "y", "z")
    described = expected.LoadPlan(three, four, {"m": ((1,), (2,))}, ("k",)).describe()
    assert described == "1 loaded, 3 missing (a, b, c), 4 unexpected (w, x, y, +1), 1 size-mismatched (m)"
    assert expected.LoadPlan((), (), {}, ()).describe() == "0 loaded"


def test_a_clean_load_says_strict_true_loaded() -> None:
    scenario = Scenario("toy_same", "-", ("toy",), lambda case: Classifier())
    outcome = partial_run.run_scenario(scenario, Classifier().state_dict(), _toy_case())
    assert outcome == partial_run.Outcome("pass", "plan: 6 loaded | strict=True loaded | strict=False reported 0 "
                                                  "missing/0 unexpected as planned, 6 values bit-identical, missing "
                                                  "ones untouched")


class _WithholdsNames(nn.Module):
    """``count`` one-element parameters p0, p1, …; a strict load raises without naming any key."""

    def __init__(self, count: int) -> None:
        super().__init__()
        for i in range(count):
            self.register_parameter(f"p{i}", nn.Parameter(torch.zeros(1)))

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        if strict:
            raise RuntimeError("Error(s) in loading state_dict:\n\tnames withheld")
        return super().load_state_dict(state_dict, strict=False, **kwargs)


@pytest.mark.parametrize("count, words", [
    (0, "strict=True raised on a clean plan: Error(s) in loading state_dict: names withheld | plan: 0 loaded | "
        "fix: none needed"),
    (2, 'strict=True error does not name missing "p0", missing "p1", unexpected "fc.weight", unexpected "fc.bias": '
        "Error(s) in loading state_dict: names withheld | plan: 0 loaded, 2 missing (p0, p1), 2 unexpected "
        "(fc.weight, fc.bias) | fix: none needed"),
    (3, 'strict=True error does not name missing "p0", missing "p1", missing "p2", unexpected "fc.weight" (+1): '
        "Error(s) in loading state_dict: names withheld | plan: 0 loaded, 3 missing (p0, p1, p2), 2 unexpected "
        "(fc.weight, fc.bias) | fix: none needed"),
])
def test_a_strict_error_that_names_no_key_fails_listing_the_first_four(count: int, words: str) -> None:
    scenario = Scenario("toy_withholds", "-", ("toy",), lambda case: _WithholdsNames(count))
    source = _simple_state() if count else collections.OrderedDict()
    assert partial_run.run_scenario(scenario, source, _simple_case()) == partial_run.Outcome("fail", words)


class _NotKept(partial_damage.HidesUnexpected):
    """A module that takes extra state: harness.partial.targets builds it anew for every use."""

    def set_extra_state(self, state: Any) -> None:
        self.extra = state


def test_a_failure_whose_target_no_longer_builds_says_the_plan_is_unavailable() -> None:
    built = []

    def builds_once(case: Case) -> nn.Module:
        if built:
            raise RuntimeError("built once already")
        built.append(case.name)
        return _NotKept()

    outcome = partial_run.run_scenario(Scenario("toy_once", "-", ("toy",), builds_once), _simple_state(),
                                       _simple_case())
    assert outcome == partial_run.Outcome("fail", "missing_keys differ from the plan: reported but not planned "
                                                  "_extra_state; planned but not reported - | plan unavailable: "
                                                  "RuntimeError: built once already")


class _TensorExtraState(nn.Module):
    """Extra state that is a tensor: its shape in the file is no size mismatch (the target's is unknown)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.kept = torch.arange(3.0)

    def get_extra_state(self) -> torch.Tensor:
        return self.kept

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.kept = state


def test_plan_loads_extra_state_of_any_kind() -> None:
    for model in (_TensorExtraState(), WithExtras()):
        plan = expected.plan(model.state_dict(), model)
        assert plan.clean and plan.loaded == tuple(model.state_dict()), plan
    assert expected.source_shapes(WithExtras().state_dict())["stateful._extra_state"] == ()
    assert expected.source_shapes(_TensorExtraState().state_dict())["_extra_state"] == (3,)


class _IgnoresSizes(nn.Module):
    """strict=False silently skips size-mismatched keys instead of raising."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        fits = {k: v for k, v in state_dict.items() if k not in self.state_dict() or
                v.shape == self.state_dict()[k].shape}
        return super().load_state_dict(fits if not strict else state_dict, strict=strict, **kwargs)


class _Refuses(nn.Linear):
    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        raise RuntimeError("Error(s) in loading state_dict:\n\trefused")


class _ChangesTheRest(nn.Module):
    """Loads what the file holds, then changes the layer the file does not hold."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 2)
        self.extra = nn.Linear(2, 2)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, **kwargs)
        with torch.no_grad():
            self.extra.weight.add_(1.0)
        return result


@pytest.mark.parametrize("target, words", [
    (_IgnoresSizes, "strict=False loaded although fc.weight, fc.bias differ in shape | plan: 0 loaded, 2 "
                    "size-mismatched (fc.weight, fc.bias) | fix: none needed"),
    (partial_damage.GarblesSizeMismatch,
     "strict=False error does not name size mismatch for fc.weight (2, 10)→(3, 10), size mismatch for fc.bias "
     "(2,)→(3,): Error(s) in loading state_dict for GarblesSizeMismatch: size mismatch for fc.weight: copying a "
     "param with shape torch.Size([3, 10]) from checkpoint, the shape in current model is torch.Size([2, 10]). "
     "size mismatch for fc.bias: copying a param with shape torch.Size([3]) from checkpoint, the shape in current "
     "model is torch.Size([2]). | plan: 0 loaded, 2 size-mismatched (fc.weight, fc.bias) | fix: none needed"),
    (lambda: _Refuses(10, 2), "strict=False raised unplanned: Error(s) in loading state_dict: refused | plan: 0 "
                              "loaded, 2 missing (weight, bias), 2 unexpected (fc.weight, fc.bias) | fix: none needed"),
    (_ChangesTheRest, "keys missing from the checkpoint changed anyway: extra.weight | plan: 2 loaded, 2 missing "
                      "(extra.weight, extra.bias) | fix: none needed"),
])
def test_a_lenient_load_that_departs_from_the_plan_fails_saying_how(target: Any, words: str) -> None:
    scenario = Scenario("toy_lenient", "-", ("toy",), lambda case: target())
    assert partial_run.run_scenario(scenario, _simple_state(), _simple_case()) == partial_run.Outcome("fail", words)


def test_strict_false_names_only_the_size_mismatches_beside_missing_keys() -> None:
    """strict=False raises for the size mismatch alone; the keys missing beside it are not in its message."""
    def bigger_with_new_head(case: Case) -> nn.Module:
        return nn.Sequential(_new_head(case), nn.Linear(10, 2))

    scenario = Scenario("toy_head_and_more", "-", ("toy",), bigger_with_new_head)
    outcome = partial_run.run_scenario(scenario, nn.Sequential(Classifier()).state_dict(), _toy_case())
    assert outcome.status == "pass", outcome
    assert outcome.detail.startswith("plan: 4 loaded, 2 missing (1.weight, 1.bias), 2 size-mismatched "
                                     "(0.classifier.2.weight, 0.classifier.2.bias) | strict=True raised naming every "
                                     "key | strict=False raised as planned: "), outcome


def test_a_scenario_names_the_fixes_it_may_have() -> None:
    with pytest.raises(ValueError) as raised:
        Scenario("toy_fix", "-", ("toy",), _new_head, fix="rename")
    assert str(raised.value) == "scenario toy_fix: fix must be one of ('drop_mismatched', 'prefix') or None"


def test_three_stacked_prefixes_keep_their_order() -> None:
    """The search's running prefix grows outside-in for strips and inside-out for adds: with three mixed
    prefixes a wrong order would name another (unhelpful) prefix."""
    bare = nn.Sequential(nn.Linear(2, 2))
    state = fixes.add_prefix(fixes.add_prefix(fixes.add_prefix(bare.state_dict(), "module."), "_orig_mod."),
                             "module.")
    strip = fixes.detect_prefix(state, bare)
    assert strip == fixes.PrefixFix("strip", "module._orig_mod.module.")
    assert list(strip.apply(state)) == list(bare.state_dict())
    outer = nn.Module()
    outer.module = nn.Module()
    outer.module._orig_mod = nn.Module()
    outer.module._orig_mod.module = bare
    add = fixes.detect_prefix(bare.state_dict(), outer)
    assert add == fixes.PrefixFix("add", "module._orig_mod.module.")
    assert list(add.apply(bare.state_dict())) == list(outer.state_dict())


def test_a_failing_scenario_still_gives_the_plan_of_a_target_built_from_the_case(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan after a failure is worked out on the scenario's target for this case (not a target built
    without it): the failure's message still says what would load and what to do."""
    monkeypatch.setattr(partial_run, "_check_strict", lambda *args: (_ for _ in ()).throw(
        partial_run.Mismatch("strict=True loaded although the plan has missing, unexpected or mismatched keys")))
    head = Scenario("toy_head", "-", ("toy",), lambda case: _new_head(case) if case.name == "toy" else None,
                    fix="drop_mismatched")
    outcome = partial_run.run_scenario(head, Classifier().state_dict(), _toy_case())
    assert outcome == partial_run.Outcome("fail", (
        "strict=True loaded although the plan has missing, unexpected or mismatched keys | plan: 4 loaded, "
        "2 size-mismatched (classifier.2.weight, classifier.2.bias) | fix: drop_mismatched"))
