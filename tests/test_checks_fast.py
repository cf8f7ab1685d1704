"""The checks, in-process: tiny artifacts written once into a temporary folder, each check run directly.

No subprocess and no full produce: a few small cases are saved by the healthy formats and by the
deliberately broken ones (tests/plugins/damage.py, never registered here), and each check's
``run`` is called on a :class:`harness.checks.Context` built the way consume builds it. The format
axis is parametrized the way PyTorch's test_serialization parametrizes its own: every healthy
format x every check must pass or skip with its reason; every planted damage must make exactly
the guarding check fail. Hand-made contexts then pin each branch (cross-environment tolerances,
the stored-bytes bound, skips with nothing to compare).

This is the fast tier over harness/checks, harness/partial, harness/fingerprint.py and
harness/expectations.py, and the test set the mutation run (``nox -s mutants``) uses. Set
``CKPT_HARNESS_FAST_ARTIFACTS`` to a folder to write the artifacts there once and reuse them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import env as envmod
from harness.case import CASES, prepare
from harness.checks import CHECKS, Context, Outcome
from harness.checks import _devices as map_location_check
from harness.checks.sharing import allowed_bytes
from harness.consume import _run_check
from harness.formats import FORMATS, Format, LoadRequest
from harness.manifest import MANIFEST_NAME, SCHEMA, artifact_path, read, write_atomic
from harness.produce import _produce_case
from tests.oracle import oracle, oracle_differences
from tests.plugins import damage

CASE_NAMES = ("tied", "simple", "batchnorm")
#: the healthy matrix: tied (Adam, shared weights, a view) and batchnorm (modes, _metadata versions);
#: simple (SGD: no tensor step) has its own tests
HEALTHY_CASES = ("tied", "batchnorm")
HEALTHY = ("state_dict_zip", "state_dict_legacy", "whole_model_zip", "training_checkpoint")
BROKEN = {fmt.name: fmt for fmt in damage.all_broken()}
#: the checks every healthy artifact is run through (the partial:* ones have their own tests)
CHECK_NAMES = ("tensors", "sharing", "outputs", "resave", "resume", "mode", "map_location", "cuda_tagged",
               "optimizer_device")


def _formats() -> list[Format]:
    return [FORMATS.get(name) for name in HEALTHY] + list(BROKEN.values())


def _produce(root: Path) -> Path:
    """Save every case in every format (healthy and broken) into ``root``; write the manifest last."""
    env = envmod.describe("cpu")
    manifest = {"schema": SCHEMA, "env": env, "env_id": "fast", "cases": {}, "entries": [], "created": "-"}
    for name in CASE_NAMES:
        _produce_case(CASES.get(name), _formats(), root, manifest, "cpu")
    write_atomic(root / MANIFEST_NAME, manifest)
    return root / MANIFEST_NAME


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The artifacts' manifest as consume reads it (``_root`` set); written once per session or cache."""
    cache = os.environ.get("CKPT_HARNESS_FAST_ARTIFACTS")
    root = Path(cache) if cache else tmp_path_factory.mktemp("fast-artifacts")
    if not (root / MANIFEST_NAME).is_file():
        staging = root.with_name(root.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _produce(staging)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    return read(root / MANIFEST_NAME)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def entry_of(manifest: dict[str, Any], case: str, fmt: str) -> dict[str, Any]:
    found = [e for e in manifest["entries"] if (e["case"], e["format"]) == (case, fmt)]
    assert found and found[0]["status"] == "ok", found
    return found[0]


def context(manifest: dict[str, Any], case: str, fmt_name: str, workdir: Path, mode: str = "unsafe",
            **changes: Any) -> Context:
    """The Context consume would build for this artifact loaded in ``mode`` (default: the full unpickle,
    allowed on the harness's own files), with ``changes`` applied."""
    fmt = BROKEN.get(fmt_name) or FORMATS.get(fmt_name)
    entry = copy.deepcopy(entry_of(manifest, case, fmt_name))
    path = artifact_path(manifest, entry)
    the_case = CASES.get(case)
    loaded = fmt.open(path, LoadRequest(mode, None, "path", the_case, trusted=True))
    ctx = Context(fmt=fmt, entry=entry, case_section=copy.deepcopy(manifest["cases"][case]), artifact=path,
                  root=Path(manifest["_root"]), loaded=loaded, load_mode=mode, case=the_case, case_missing=None,
                  producer=manifest["env"], consumer=manifest["env"], same_numerics=True, map_location=None,
                  workdir=workdir, trusted=True)
    return dataclasses.replace(ctx, **changes) if changes else ctx


def with_entry(ctx: Context, **fields: Any) -> Context:
    """``ctx`` with these manifest-entry fields replaced (a field set to DELETE is removed)."""
    entry = {k: plain(v) for k, v in ctx.entry.items()}
    for key, value in fields.items():
        if value is DELETE:
            entry.pop(key, None)
        else:
            entry[key] = value
    return dataclasses.replace(ctx, entry=entry)


DELETE = object()


def plain(value: Any) -> Any:
    """A writable deep copy of a read-only manifest value."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def run(name: str, ctx: Context) -> Outcome:
    """One check as consume runs it: applies() first, then run() with exceptions turned into errors."""
    check = CHECKS.get(name)
    return _run_check(check, ctx.for_check(check))


# -- every healthy format x every check: pass, or skip with a reason ------------------------------


@pytest.fixture(scope="module")
def healthy(manifest: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Outcome]:
    """Every check on every case saved by every healthy format, run once: {(case, format, check): outcome}."""
    workdir = tmp_path_factory.mktemp("healthy")
    found = {}
    for case in HEALTHY_CASES:
        for fmt in HEALTHY:
            ctx = context(manifest, case, fmt, workdir)
            for check in CHECK_NAMES:
                found[(case, fmt, check)] = run(check, ctx)
    return found


@pytest.mark.parametrize("fmt", HEALTHY)
@pytest.mark.parametrize("check", CHECK_NAMES)
def test_healthy_formats_pass_or_skip_with_a_reason(healthy: dict, fmt: str, check: str) -> None:
    for case in HEALTHY_CASES:
        outcome = healthy[(case, fmt, check)]
        assert outcome.status in ("pass", "skip"), (case, outcome)
        assert outcome.detail, (case, outcome)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_every_check_passes_somewhere(healthy: dict, check: str) -> None:
    """A check that only ever skips on healthy artifacts would prove nothing."""
    statuses = {healthy[(case, fmt, check)].status for case in HEALTHY_CASES for fmt in HEALTHY}
    assert "pass" in statuses, statuses


# -- planted damage: the guarding check fails, naming what it found --------------------------------

DAMAGE = [
    ("batchnorm", "broken_drop_buffer", "tensors", "missing"),
    ("tied", "broken_flip_bit", "tensors", "values differ"),
    ("tied", "broken_flip_bit", "outputs", "not bit-identical"),
    ("tied", "broken_untie", "sharing", "sharing changed"),
    ("batchnorm", "broken_flip_mode", "mode", "changed train/eval flag"),
    ("batchnorm", "broken_not_a_module", "mode", "not a module"),
    ("tied", "broken_forget_momentum", "resume", "resumed step differs"),
    ("tied", "broken_forget_momentum", "optimizer_device", "resumed step differs"),
    ("tied", "broken_lossy_resave", "resave", "missing"),
    ("tied", "broken_grow_bytes", "sharing", "tensor bytes for a"),
    ("simple", "broken_grow_bytes", "sharing", "tensor bytes for a"),
    ("tied", "broken_change_value", "tensors", "value epoch: 2 != 3"),
    ("tied", "broken_extra_value", "tensors", "value note unexpected"),
    ("batchnorm", "broken_change_metadata", "tensors", "_metadata"),
    ("tied", "broken_step_on_meta", "optimizer_device", "step is not a CPU tensor: meta"),
]


@pytest.mark.parametrize("case, fmt, check, words", DAMAGE)
def test_planted_damage_fails_the_check(manifest: dict, workdir: Path, case: str, fmt: str, check: str,
                                        words: str) -> None:
    outcome = run(check, context(manifest, case, fmt, workdir))
    assert outcome.status == "fail", outcome
    assert words in outcome.detail


@pytest.mark.parametrize("fmt", sorted(BROKEN))
def test_broken_formats_leave_the_other_checks_alone(manifest: dict, workdir: Path, fmt: str) -> None:
    """Each damage is caught where it belongs, not by accident everywhere (tensors stay intact where
    the damage is elsewhere)."""
    guards = {check for _, f, check, _ in DAMAGE if f == fmt}
    if fmt in ("broken_drop_buffer", "broken_flip_bit", "broken_not_a_module"):
        pytest.skip(f"{fmt} damages the tensors themselves")
    if "tensors" not in guards:
        outcome = run("tensors", context(manifest, "tied", fmt, workdir))
        assert outcome.status == "pass", outcome


@pytest.fixture(scope="module")
def tied_prepared() -> Any:
    """The tied case trained as produce trains it (seeded: the same tensors every time)."""
    return prepare(CASES.get("tied"))


TENSOR_DAMAGE = ("broken_drop_buffer", "broken_flip_bit", "broken_change_value", "broken_extra_value")


@pytest.mark.parametrize("fmt", HEALTHY + TENSOR_DAMAGE + ("broken_grow_bytes", "broken_untie"))
def test_tensors_verdict_agrees_with_the_independent_oracle(manifest: dict, workdir: Path, tied_prepared: Any,
                                                            fmt: str) -> None:
    """The tensors check passes exactly when the oracle (SHA-256 over a stride walk, tests/oracle.py)
    finds the loaded tensors and values equal to a fresh payload of the same seeded case."""
    ctx = context(manifest, "tied", fmt, workdir)
    payload = ctx.fmt.payload(tied_prepared)
    found = oracle_differences(oracle(ctx.fmt.contents(payload)), oracle(ctx.contents))
    tensors_or_values = [p for p in found if not p.startswith("oracle: sharing")]
    outcome = run("tensors", ctx)
    assert (outcome.status == "pass") == (not tensors_or_values), (outcome, found)
    assert (fmt in TENSOR_DAMAGE) == bool(tensors_or_values), found


# -- hand-made contexts: each branch of each check --------------------------------------------------


def _shift(tensors: dict[str, torch.Tensor], by: float) -> dict[str, torch.Tensor]:
    return {k: (v + by if v.is_floating_point() else v) for k, v in tensors.items()}


def _foreign(ctx: Context, outputs_by: float | None = None, next_step_by: float | None = None,
             drop_next_step: bool = False) -> Context:
    """As if produced by another release: compared within tolerance against shifted stored tensors."""
    stored = dict(ctx.stored)
    if outputs_by is not None:
        stored["outputs"] = _shift(stored["outputs"], outputs_by)
    if next_step_by is not None:
        stored["next_step"] = _shift(stored["next_step"], next_step_by)
    if drop_next_step:
        stored.pop("next_step", None)
    foreign = dataclasses.replace(ctx, same_numerics=False, producer={**ctx.producer, "torch": "0.0.1"})
    foreign.__dict__["stored"] = stored
    return foreign


@pytest.mark.parametrize("factor, status", [(0.5, "pass"), (2.0, "fail"), (1e3, "fail")])
def test_outputs_across_environments_are_held_to_atol(manifest: dict, workdir: Path, factor: float,
                                                      status: str) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    atol = float(ctx.case_section["atol"])
    outcome = run("outputs", _foreign(ctx, outputs_by=atol * factor))
    assert outcome.status == status, outcome
    assert ("exceeds atol" if status == "fail" else "within atol") in outcome.detail


@pytest.mark.parametrize("factor, status", [(0.5, "pass"), (2.0, "fail"), (1e3, "fail")])
def test_resume_across_environments_is_held_to_resume_atol(manifest: dict, workdir: Path, factor: float,
                                                           status: str) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    atol = float(ctx.case_section["resume_atol"])
    outcome = run("resume", _foreign(ctx, next_step_by=atol * factor))
    assert outcome.status == status, outcome
    assert ("away from the producer's uninterrupted step" if status == "fail" else "within") in outcome.detail


def test_resume_across_environments_without_a_stored_next_step_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    outcome = run("resume", _foreign(ctx, drop_next_step=True))
    assert outcome.status == "skip" and "stored none" in outcome.detail


def test_resume_across_environments_with_other_entries_fails(manifest: dict, workdir: Path) -> None:
    ctx = _foreign(context(manifest, "tied", "training_checkpoint", workdir))
    ctx.__dict__["stored"] = {**ctx.stored, "next_step": {**ctx.stored["next_step"], "model.ghost": torch.zeros(1)}}
    outcome = run("resume", ctx)
    assert outcome.status == "fail" and "model.ghost" in outcome.detail


class _WithoutRngState:
    """A format whose training state keeps no RNG state (the tutorial layout)."""

    def __init__(self, fmt: Format) -> None:
        self._fmt = fmt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def resumable(self, obj: Any) -> Any:
        return dataclasses.replace(self._fmt.resumable(obj), rng_state=None)


class _WithDropout:
    """A case whose models draw dropout masks."""

    def __init__(self, case: Any) -> None:
        self._case = case

    def __getattr__(self, name: str) -> Any:
        return getattr(self._case, name)

    def fresh_models(self) -> dict[str, torch.nn.Module]:
        return {n: torch.nn.Sequential(m, torch.nn.Dropout(0.5)) for n, m in self._case.fresh_models().items()}


def test_resume_without_rng_state_is_still_compared_when_nothing_is_random(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    outcome = run("resume", dataclasses.replace(ctx, fmt=_WithoutRngState(ctx.fmt)))
    assert outcome.status == "pass" and "bitexact: true" in outcome.detail, outcome


def test_resume_without_rng_state_and_with_dropout_skips_saying_why(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    ctx = dataclasses.replace(ctx, fmt=_WithoutRngState(ctx.fmt), case=_WithDropout(ctx.case))
    outcome = run("resume", ctx)
    assert outcome.status == "skip" and "keeps no RNG state" in outcome.detail, outcome
    with_rng = run("resume", dataclasses.replace(ctx, fmt=ctx.fmt._fmt))
    assert with_rng.status != "skip" or "keeps no RNG state" not in with_rng.detail, with_rng


def test_resume_without_a_recorded_next_step_skips(manifest: dict, workdir: Path) -> None:
    ctx = with_entry(context(manifest, "tied", "training_checkpoint", workdir), next_step=None)
    outcome = run("resume", ctx)
    assert outcome.status == "skip" and "no next-step fingerprint" in outcome.detail


def test_outputs_with_nothing_stored_skip(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx.__dict__["stored"] = {**ctx.stored, "outputs": {}}
    outcome = run("outputs", ctx)
    assert outcome.status == "skip" and "no forward outputs" in outcome.detail


def test_outputs_without_recorded_hashes_skip(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = dataclasses.replace(ctx, case_section={**plain(ctx.case_section), "outputs": {}})
    outcome = run("outputs", ctx)
    assert outcome.status == "skip" and "no output hashes" in outcome.detail


def test_outputs_use_the_entrys_own_hashes_when_it_has_them(manifest: dict, workdir: Path) -> None:
    """A saved program's outputs are judged against its own recorded outputs, not the case's."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = with_entry(ctx, outputs={name: {**plain(d), "hash": "0" * 32}
                                   for name, d in ctx.case_section["outputs"].items()})
    outcome = run("outputs", ctx)
    assert outcome.status == "fail" and "not bit-identical" in outcome.detail


def test_outputs_with_another_structure_fail(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx.__dict__["stored"] = {**ctx.stored, "outputs": {**ctx.stored["outputs"], "ghost": torch.zeros(1)}}
    outcome = run("outputs", ctx)
    assert outcome.status == "fail" and "output structure differs" in outcome.detail


def test_mode_without_recorded_modes_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "whole_model_zip", workdir)
    for recorded in (None, {}, DELETE):
        outcome = run("mode", with_entry(ctx, modes=recorded))
        assert outcome.status == "skip" and "no module modes" in outcome.detail


def test_mode_reports_the_roots_mode(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "whole_model_zip", workdir)
    outcome = run("mode", ctx)
    root = "train" if ctx.entry["modes"]["<root>"] else "eval"
    assert outcome.status == "pass" and f"root in {root} mode" in outcome.detail
    assert f"{len(ctx.entry['modes'])} modules keep their flags" in outcome.detail


def test_tensors_without_recorded_metadata_says_it_was_not_compared(manifest: dict, workdir: Path) -> None:
    ctx = with_entry(context(manifest, "batchnorm", "broken_change_metadata", workdir), metadata=DELETE)
    outcome = run("tensors", ctx)
    assert outcome.status == "pass" and "_metadata not compared" in outcome.detail


def test_tensors_with_an_empty_fingerprint_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = with_entry(ctx, fingerprint={"tensors": {}, "scalars": {}, "view_bytes_bound": 0}, metadata={})
    ctx.__dict__["actual"] = {"tensors": {}, "scalars": {}, "view_bytes_bound": 0}
    ctx.__dict__["contents"] = {}
    outcome = run("tensors", ctx)
    assert outcome.status == "skip" and "nothing to compare" in outcome.detail


def test_tensors_names_a_missing_value(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    del ctx.loaded["epoch"]
    outcome = run("tensors", ctx)
    assert outcome.status == "fail" and "value epoch missing" in outcome.detail


class _Measured:
    """A format wrapper whose file measurement is fixed (to pin the stored-bytes bound)."""

    def __init__(self, fmt: Format, stored: int, growth: str | None = None) -> None:
        self._fmt, self._stored, self.view_growth = fmt, stored, growth

    def stored_tensor_bytes(self, path: Path) -> int:
        return self._stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)


@pytest.mark.parametrize("extra, status", [(0, "pass"), (1, "fail")])
def test_sharing_bound_is_exact(manifest: dict, workdir: Path, extra: int, status: str) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    bound = ctx.actual["view_bytes_bound"]
    assert allowed_bytes(bound) == bound + 4096 + bound // 100
    outcome = run("sharing", dataclasses.replace(ctx, fmt=_Measured(ctx.fmt, allowed_bytes(bound) + extra)))
    assert outcome.status == status, outcome


def test_sharing_measures_the_file_not_the_manifest(manifest: dict, workdir: Path) -> None:
    """A manifest that under-reports the stored bytes does not hide a grown file."""
    ctx = with_entry(context(manifest, "tied", "broken_grow_bytes", workdir), stored_tensor_bytes=0)
    assert run("sharing", ctx).status == "fail"


def test_sharing_known_growth_passes_saying_so(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "broken_grow_bytes", workdir)
    outcome = run("sharing", dataclasses.replace(ctx, fmt=_Measured(ctx.fmt, 10**9, "views saved whole")))
    assert outcome.status == "pass" and "known: views saved whole" in outcome.detail


def test_sharing_with_no_tensors_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = with_entry(ctx, fingerprint={**plain(ctx.entry["fingerprint"]), "tensors": {}})
    assert run("sharing", ctx).status == "skip"


def test_sharing_reports_the_lost_group(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "broken_untie", workdir)
    outcome = run("sharing", ctx)
    assert outcome.status == "fail" and "lost [[" in outcome.detail and "new none" in outcome.detail


def _damaging_form(device: str = "cpu") -> map_location_check.Form:
    """A callable map_location that lands on the CPU but flips one bit of every storage it sees."""

    def flip(storage: Any, location: str) -> Any:
        if storage.nbytes():
            storage[0] = storage[0] ^ 1
        return storage

    return map_location_check.Form("lambda that flips a bit", lambda: flip, device, "callable")


def test_map_location_catches_wrong_values(manifest: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A map_location that lands every tensor on the right device with the wrong bytes fails."""
    monkeypatch.setattr(map_location_check, "forms", lambda: [_damaging_form()])
    outcome = run("map_location", context(manifest, "tied", "state_dict_zip", workdir))
    assert outcome.status == "fail" and "values differ" in outcome.detail


def test_map_location_catches_a_wrong_device(manifest: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(map_location_check, "forms",
                        lambda: [map_location_check.Form("'cpu' said to be meta", lambda: "cpu", "meta", "str")])
    outcome = run("map_location", context(manifest, "tied", "state_dict_zip", workdir))
    assert outcome.status == "fail" and "not meta" in outcome.detail


def test_optimizer_device_without_tensor_steps_skips(manifest: dict, workdir: Path) -> None:
    """SGD keeps no step: nothing to say about its device, said as a skip (the resume still ran)."""
    outcome = run("optimizer_device", context(manifest, "simple", "training_checkpoint", workdir))
    assert outcome.status == "skip" and "no tensor step" in outcome.detail and "within" not in outcome.detail


def test_optimizer_device_counts_the_steps(manifest: dict, workdir: Path) -> None:
    outcome = run("optimizer_device", context(manifest, "tied", "training_checkpoint", workdir))
    assert outcome.status == "pass", outcome
    assert " tensor step(s) on cpu" in outcome.detail and not outcome.detail.startswith("0 ")


def test_the_fast_artifacts_cover_every_broken_format(manifest: dict) -> None:
    saved = {e["format"] for e in manifest["entries"] if e["status"] == "ok"}
    assert set(BROKEN) <= saved
