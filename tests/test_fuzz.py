"""Round trips of Hypothesis-generated models through every registered format.

The property, per format: save a model built from a random spec, load it back in every load mode,
and either the fidelity checks hold (tensor names, dtypes, shapes, strides, requires_grad, bit-
identical values, storage sharing, forward outputs) or the load is a documented refusal — an
entry of ``harness/data/expected.toml`` such as weights_only refusing a pickled module — and
nothing else. A failure shrinks to a minimal spec and prints it as code to paste
(``harness.spec.to_code``). Profiles: ``HYPOTHESIS_PROFILE=dev|ci|nightly`` (see harness.strategies).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, note, settings  # noqa: E402

from harness import env as envmod  # noqa: E402
from harness import expectations, strategies  # noqa: E402
from harness.case import Prepared, forward_outputs, prepare, trainable  # noqa: E402
from harness.checks._compare import fingerprint_differences  # noqa: E402
from harness.fingerprint import describe_tensor, fingerprint, sharing_groups  # noqa: E402
from harness.formats import FORMATS, CannotSave, Format, LoadRequest  # noqa: E402
from harness.formats.state_dict import StateDict  # noqa: E402
from harness.spec import (  # noqa: E402
    LSTM,
    BatchNorm,
    Conv,
    Embedding,
    Extra,
    Linear,
    ModelSpec,
    TransformerLayer,
    as_case,
    build,
    example_inputs,
    to_code,
)
from tests.oracle import oracle, oracle_differences  # noqa: E402

PROFILE = strategies.profile()
KNOWN = expectations.load()
HERE = envmod.brief(envmod.describe("cpu"))
FORMAT_NAMES = [fmt.name for fmt in FORMATS]


def prepared_for(spec: ModelSpec, pair: bool = False) -> Prepared:
    """The spec's case (a pair of models for multi-model formats) after one optimizer step; with no
    trainable parameter, untrained and without optimizers."""
    case = as_case(spec, pair=pair)
    models, inputs = case.fresh_models(), case.example_inputs()
    if all(_trains(model, inputs[name]) for name, model in models.items()):
        return prepare(case, steps=1)
    return Prepared(case, models, {}, {}, inputs, 0, 0.0, torch.get_rng_state(), None)


def _trains(model: torch.nn.Module, inputs: tuple) -> bool:
    """The output depends on a trainable parameter (else there is no gradient to take a step with)."""
    if not trainable(model):
        return False
    with torch.enable_grad():
        return bool(model.train()(*inputs).requires_grad)


def forget(case: Any) -> None:
    """Drop the case's cached template model (harness.case keeps one per case; fuzzing makes thousands)."""
    case.forget_template()


def documented_refusal(fmt: Format, mode: str, error: Optional[str]) -> Optional[str]:
    """None when a load's outcome is as documented (expected.toml), else what is wrong with it."""
    record = {"producer": HERE, "consumer": HERE, "case": "fuzz", "format": fmt.name, "check": "load",
              "load_mode": mode, "status": "error" if error else "pass"}
    problem = expectations.judge(record, KNOWN)
    return f"{mode}: {problem}{': ' + error if error else ''}" if problem else None


def round_trip_problems(fmt: Format, spec: ModelSpec) -> list[str]:
    """Everything that went wrong saving ``spec``'s model with ``fmt`` and loading it back."""
    prepared = prepared_for(spec, pair=fmt.models == "many")
    try:
        return _round_trip(fmt, prepared)
    finally:
        forget(prepared.case)


def _round_trip(fmt: Format, prepared: Prepared) -> list[str]:
    if "optimizer" in fmt.holds and not prepared.optimizers:
        return []  # nothing to train: an optimizer-holding format has nothing to hold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            payload = fmt.payload(prepared)
        except CannotSave:  # the format's documented refusal (e.g. the ONNX exporter, numpy without bfloat16)
            return []
        expected = fingerprint(fmt.contents(payload))
        expected_outputs = _outputs(fmt, payload, prepared)
        expected_oracle = oracle(fmt.contents(payload))  # an independent second opinion on the fingerprints
        problems = []
        with tempfile.TemporaryDirectory(prefix="ckpt-fuzz-") as folder:
            path = Path(folder) / f"model{fmt.suffix}"
            fmt.save(payload, path)
            for mode in fmt.load_modes:
                try:
                    loaded = fmt.open(path, LoadRequest(mode, case=prepared.case, trusted=True))
                except Exception as exc:
                    problem = documented_refusal(fmt, mode, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
                    problems += [problem] if problem else []
                    continue
                problem = documented_refusal(fmt, mode, None)
                problems += [problem] if problem else []
                problems += [f"{mode}: {p}" for p in _fidelity(fmt, loaded, expected, expected_outputs, prepared)]
                problems += [f"{mode}: {p}" for p in oracle_differences(expected_oracle, oracle(fmt.contents(loaded)))]
    return problems


def _outputs(fmt: Format, obj: Any, prepared: Prepared) -> dict[str, dict]:
    """Described forward outputs: of the saved program for formats that hold one, else of the eager model."""
    modules = fmt.modules(obj, prepared.case) if fmt.own_program else prepared.models
    return {name: describe_tensor(t) for name, t in forward_outputs(modules, prepared.inputs).items()}


def _fidelity(fmt: Format, loaded: Any, expected: dict, expected_outputs: dict, prepared: Prepared) -> list[str]:
    actual = fingerprint(fmt.contents(loaded))
    problems = fingerprint_differences(expected["tensors"], actual["tensors"])
    if expected["scalars"] != actual["scalars"]:
        problems.append("non-tensor values differ")
    if sharing_groups(expected["tensors"]) != sharing_groups(actual["tensors"]):
        problems.append(f"sharing {sharing_groups(expected['tensors'])} != {sharing_groups(actual['tensors'])}")
    outputs = _outputs(fmt, loaded, prepared)  # every format gives callable models back
    problems += [f"output {p}" for p in fingerprint_differences(expected_outputs, outputs, ("dtype", "shape", "hash"))]
    return problems


def assert_round_trip(fmt: Format, spec: ModelSpec) -> None:
    code = to_code(spec)
    note(f"{fmt.name} round trip of:\n{code}")
    problems = round_trip_problems(fmt, spec)
    if problems:  # raised, not asserted: pytest would indent the code inside an assert message
        raise AssertionError(f"{fmt.name} round trip failed: {'; '.join(problems[:5])}\nreproduce with:\n{code}")


# Regressions and corner cases kept as explicit examples (found while building the strategies).
CORNERS = [
    ModelSpec(features=1, layers=(Linear(out_features=1),), batch=0),            # empty batch
    ModelSpec(features=5, layers=(BatchNorm(affine=False),), dtype="bfloat16", container="nested",
              extras=(Extra(name="extra0", shape=(), dtype="uint8"),), batch=0, seed=3),  # no trainable parameter
    ModelSpec(features=1, layers=(BatchNorm(affine=False, track_running_stats=False),),
              # the output needs no parameter
              extras=(Extra(name="extra0", shape=(), kind="parameter"),), batch=0, length=1),
    ModelSpec(features=3, layers=(Embedding(vocab=4, dim=2), Linear(out_features=4, transposed=True)),
              ties=((0, 1),), container="module_dict"),                         # tied embedding and head
    ModelSpec(features=2, layers=(Conv(out_channels=2, dims=2, channels_last=True), LSTM(hidden=2, bidirectional=True),
                                  TransformerLayer(nhead=2, ff=1)), dtype="float16", container="module_list",
              extras=(Extra(name="extra0", shape=(2, 0, 1, 3), dtype="complex64", kind="parameter",
                            layout="channels_last"),
                      Extra(name="extra1", shape=(3, 2), dtype="bool", layout="transposed", persistent=False))),
]


def _with_corners(test: Any) -> Any:
    for spec in CORNERS:
        test = example(spec=spec)(test)
    return test


@pytest.mark.slow  # Hypothesis over every format: minutes (the fast tier's format axis is tests/test_matrix.py)
@pytest.mark.parametrize("format_name", FORMAT_NAMES)
@PROFILE
@_with_corners
@given(spec=strategies.model_specs())
def test_round_trip_keeps_everything_or_refuses_as_documented(format_name: str, spec: ModelSpec) -> None:
    fmt = FORMATS.get(format_name)
    if fmt.unavailable():
        pytest.skip(fmt.unavailable())
    assert_round_trip(fmt, spec)


@PROFILE
@given(spec=strategies.model_specs())
def test_specs_are_plain_data_and_their_code_rebuilds_the_model(spec: ModelSpec) -> None:
    assert eval(repr(spec), vars(__import__("harness.spec", fromlist=["*"]))) == spec
    namespace: dict[str, Any] = {}
    exec(to_code(spec), namespace)
    rebuilt, original = namespace["model"].state_dict(), build(spec).state_dict()
    assert fingerprint(rebuilt)["tensors"] == fingerprint(original)["tensors"]
    with torch.no_grad():
        out = build(spec).eval()(*example_inputs(spec))
    assert out.shape[:2] == (spec.batch, spec.length) and out.shape[-1] == spec.widths()[-1]


@pytest.mark.slow  # 300 generated specs
def test_strategies_reach_the_corners() -> None:
    """Every corner the issue asks for is drawn within a few hundred examples."""
    seen: set[str] = set()

    @settings(max_examples=300, database=None, derandomize=True, deadline=None)
    @given(spec=strategies.model_specs())
    def collect(spec: ModelSpec) -> None:
        kinds = {type(layer).__name__ for layer in spec.layers}
        seen.update(kinds)
        seen.add(f"dtype:{spec.dtype}")
        seen.add(f"container:{spec.container}")
        seen.update(f"extra:{e.dtype}" for e in spec.extras)
        seen.update(f"layout:{e.layout}" for e in spec.extras)
        if spec.ties:
            seen.add("tied")
        if spec.batch == 0 or any(0 in e.shape for e in spec.extras):
            seen.add("size-0")
        if spec.batch == 1 or spec.length == 1:
            seen.add("size-1")
        if any(isinstance(layer, Linear) and layer.transposed for layer in spec.layers):
            seen.add("non-contiguous")
        if any(isinstance(layer, Conv) and layer.channels_last and layer.dims == 2 for layer in spec.layers):
            seen.add("channels_last")

    collect()
    wanted = {"Linear", "Conv", "BatchNorm", "Embedding", "LSTM", "TransformerLayer", "tied", "size-0", "size-1",
              "non-contiguous", "channels_last", "extra:complex64", "extra:bool", "extra:int64",
              *(f"dtype:{d}" for d in ("float32", "float16", "bfloat16", "float64")),
              *(f"container:{c}" for c in ("sequential", "module_list", "module_dict", "nested"))}
    assert wanted <= seen, sorted(wanted - seen)


class FlipsOneBit(StateDict):
    """Not registered: a state_dict format that flips the lowest bit of the first float tensor on load."""

    def __init__(self) -> None:
        super().__init__(legacy=False)
        self.name = "test_flips_one_bit"

    def load(self, path: Path, mode: str, map_location: Any, case: Any) -> Any:
        state = super().load(path, mode, map_location, case)
        for key, value in state.items():
            if value.is_floating_point() and value.numel():
                state[key] = (value.view(torch.int16 if value.element_size() == 2 else torch.int32
                                         if value.element_size() == 4 else torch.int64) ^ 1).view(value.dtype)
                break
        return state


@pytest.mark.slow  # 30 generated specs through a broken format, then shrinking
def test_the_property_catches_a_broken_format_and_prints_pasteable_code() -> None:
    broken = FlipsOneBit()

    @settings(max_examples=30, database=None, derandomize=True, deadline=None)
    @given(spec=strategies.model_specs())
    def property_on_broken(spec: ModelSpec) -> None:
        assert_round_trip(broken, spec)

    with pytest.raises(AssertionError) as caught:
        property_on_broken()
    message = str(caught.value)
    assert "values differ" in message and "from harness.spec import" in message
    code = message.split("reproduce with:\n", 1)[1]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the printed code runs and rebuilds the failing model
    assert isinstance(namespace["model"], torch.nn.Module)
    assert round_trip_problems(broken, namespace["spec"])  # and it still fails


def test_profiles_are_registered_with_the_promised_settings() -> None:
    strategies.register_profiles()
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None
    assert settings.get_profile("dev").max_examples < ci.max_examples < settings.get_profile("nightly").max_examples


def test_ci_profile_is_picked_up_when_ci_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(strategies.PROFILE_VARIABLE, raising=False)
    monkeypatch.setenv("CI", "true")
    assert strategies.profile_name() == "ci"
    monkeypatch.setenv(strategies.PROFILE_VARIABLE, "nightly")
    assert strategies.profile_name() == "nightly"


def test_inconsistent_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="nhead"):
        build(ModelSpec(features=3, layers=(TransformerLayer(nhead=2),)))
    with pytest.raises(ValueError, match="tie"):
        build(ModelSpec(features=3, layers=(Linear(out_features=2), Linear(out_features=3)), ties=((0, 1),)))
    with pytest.raises(ValueError, match="BatchNorm"):
        build(ModelSpec(features=3, layers=(BatchNorm(),), batch=1, length=1))
    with pytest.raises(ValueError, match="first layer"):
        build(ModelSpec(features=3, layers=(Linear(out_features=2), Embedding(vocab=2, dim=2))))
