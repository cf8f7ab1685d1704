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
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import compat, cuda_tags
from harness import env as envmod
from harness.case import CASES, prepare
from harness.checks import CHECKS, Check, Context, Outcome, optimizer_device, ordered
from harness.checks import _devices as map_location_check
from harness.checks._compare import _short, fingerprint_differences, max_abs_difference, summarize
from harness.checks._resume import has_dropout, restore, training_state
from harness.checks.sharing import allowed_bytes
from harness.consume import _run_check
from harness.errors import HarnessError
from harness.fingerprint import fingerprint
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


class Healthy:
    """Each check's outcome on each healthy artifact, computed when first asked for and kept: a test
    pays only for the checks it looks at (the mutation run reruns only the tests covering a mutant)."""

    def __init__(self, manifest: dict[str, Any], workdir: Path) -> None:
        self._manifest, self._workdir, self._found = manifest, workdir, {}

    def __getitem__(self, key: tuple[str, str, str]) -> Outcome:
        if key not in self._found:
            case, fmt, check = key
            self._found[key] = run(check, context(self._manifest, case, fmt, self._workdir))
        return self._found[key]


@pytest.fixture(scope="module")
def healthy(manifest: dict, tmp_path_factory: pytest.TempPathFactory) -> Healthy:
    """Every check on every case saved by every healthy format, each run on its own fresh load:
    ``healthy[(case, format, check)]`` is the outcome."""
    return Healthy(manifest, tmp_path_factory.mktemp("healthy"))


@pytest.mark.parametrize("fmt", HEALTHY)
@pytest.mark.parametrize("check", CHECK_NAMES)
def test_healthy_formats_pass_or_skip_with_a_reason(healthy: Healthy, fmt: str, check: str) -> None:
    for case in HEALTHY_CASES:
        outcome = healthy[(case, fmt, check)]
        assert outcome.status in ("pass", "skip"), (case, outcome)
        assert outcome.detail, (case, outcome)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_every_check_passes_somewhere(healthy: Healthy, check: str) -> None:
    """A check that only ever skips on healthy artifacts would prove nothing."""
    statuses = {healthy[(case, fmt, check)].status for case in HEALTHY_CASES for fmt in HEALTHY}
    assert "pass" in statuses, statuses


# -- planted damage: the guarding check fails, naming what it found --------------------------------

#: every planted damage and the check that must catch it (shared with tests/test_checks_fail.py)
DAMAGE = damage.CAUGHT


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
    assert outcome == Outcome("skip", "across environments the resume is compared with the producer's stored "
                                      "next-step state, and it stored none (too large): nothing to compare")


def test_resume_across_environments_with_other_entries_fails(manifest: dict, workdir: Path) -> None:
    ctx = _foreign(context(manifest, "tied", "training_checkpoint", workdir))
    ctx.__dict__["stored"] = {**ctx.stored, "next_step": {**ctx.stored["next_step"], "model.ghost": torch.zeros(1)}}
    outcome = run("resume", ctx)
    total = len(ctx.stored["next_step"])
    assert outcome == Outcome("fail", f"resumed state's entries differ from the producer's next step: 1 problem(s) "
                                      f"over {total} entries: missing model.ghost")


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
    assert outcome.status == "skip", outcome
    assert outcome.detail.startswith("the checkpoint keeps no RNG state and the model draws dropout masks: ")
    assert outcome.detail.endswith("(save torch.get_rng_state() beside it to make the resume reproducible)")
    with_rng = run("resume", dataclasses.replace(ctx, fmt=ctx.fmt._fmt))
    assert with_rng.status != "skip" or "keeps no RNG state" not in with_rng.detail, with_rng


def test_resume_without_a_recorded_next_step_skips(manifest: dict, workdir: Path) -> None:
    ctx = with_entry(context(manifest, "tied", "training_checkpoint", workdir), next_step=None)
    outcome = run("resume", ctx)
    assert outcome == Outcome("skip", "the manifest records no next-step fingerprint for this artifact: nothing "
                                      "to compare")


def test_outputs_with_nothing_stored_skip(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx.__dict__["stored"] = {**ctx.stored, "outputs": {}}
    outcome = run("outputs", ctx)
    assert outcome == Outcome("skip", "the producer stored no forward outputs for this case: nothing to compare")


def test_outputs_without_recorded_hashes_skip(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = dataclasses.replace(ctx, case_section={**plain(ctx.case_section), "outputs": {}})
    outcome = run("outputs", ctx)
    assert outcome == Outcome("skip", "the manifest records no output hashes for this artifact: nothing to compare "
                                      "bitwise")


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
    stored = sorted(ctx.stored["outputs"])  # the ghost included: the model gives all but it
    assert outcome == Outcome("fail", f"output structure differs: {stored} != {[n for n in stored if n != 'ghost']}")


def test_mode_without_recorded_modes_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "whole_model_zip", workdir)
    for recorded in (None, {}, DELETE):
        outcome = run("mode", with_entry(ctx, modes=recorded))
        assert outcome == Outcome("skip", "the producer recorded no module modes for this artifact: nothing to "
                                          "compare")


def test_mode_reports_the_roots_mode(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "whole_model_zip", workdir)
    outcome = run("mode", ctx)
    root = "train" if ctx.entry["modes"]["<root>"] else "eval"
    assert outcome.status == "pass" and f"root in {root} mode" in outcome.detail
    assert f"{len(ctx.entry['modes'])} modules keep their flags" in outcome.detail


def test_tensors_without_recorded_metadata_says_it_was_not_compared(manifest: dict, workdir: Path) -> None:
    ctx = with_entry(context(manifest, "batchnorm", "broken_change_metadata", workdir), metadata=DELETE)
    outcome = run("tensors", ctx)
    fingerprint = ctx.entry["fingerprint"]
    assert outcome.status == "pass"
    assert outcome.detail == (f"{len(fingerprint['tensors'])} tensors and {len(fingerprint['scalars'])} values "
                              f"identical; _metadata not compared (the producer recorded none)")


def test_tensors_with_an_empty_fingerprint_skips(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = with_entry(ctx, fingerprint={"tensors": {}, "scalars": {}, "view_bytes_bound": 0}, metadata={})
    ctx.__dict__["actual"] = {"tensors": {}, "scalars": {}, "view_bytes_bound": 0}
    ctx.__dict__["contents"] = {}
    outcome = run("tensors", ctx)
    assert outcome.status == "skip"
    assert outcome.detail == "the producer's fingerprint lists no tensors and no values: nothing to compare"


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
    assert outcome == Outcome("fail", "sharing changed: lost [['embed.weight', 'head.weight']], new none")


def test_sharing_reports_a_new_group(manifest: dict, workdir: Path) -> None:
    """A load that shares storage the producer did not share (recorded here as unshared) names the new group."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    tensors = plain(ctx.entry["fingerprint"]["tensors"])
    tensors["table_row"]["share_group"] = "table_row"
    outcome = run("sharing", with_entry(ctx, fingerprint={**plain(ctx.entry["fingerprint"]), "tensors": tensors}))
    assert outcome == Outcome("fail", "sharing changed: lost none, new [['table', 'table_row']]")


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
    # one problem per load, counted over the loads tried (each differing load once)
    assert outcome.detail.startswith("3 problem(s) over 3 loads: lambda that flips a bit from path: "), outcome


def test_map_location_catches_a_wrong_device(manifest: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(map_location_check, "forms",
                        lambda: [map_location_check.Form("'cpu' said to be meta", lambda: "cpu", "meta", "str")])
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outcome = run("map_location", ctx)
    first = sorted(ctx.entry["fingerprint"]["tensors"])[:3]
    assert outcome.status == "fail" and "not meta" in outcome.detail
    assert outcome.detail.startswith(f"3 problem(s) over 3 loads: 'cpu' said to be meta from path: 1 problem(s) over "
                                     f"1 problems: {', '.join(first)} (+"), outcome


def test_map_location_counts_a_raising_load_once(manifest: dict, workdir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(storage: Any, location: str) -> Any:
        raise ValueError("no\n  thanks")

    good = map_location_check.Form("'cpu'", lambda: "cpu", "cpu", "str")
    bad = map_location_check.Form("a refusing callable", lambda: refuse, "cpu", "callable")
    monkeypatch.setattr(map_location_check, "forms", lambda: [good, bad])
    outcome = run("map_location", context(manifest, "tied", "state_dict_zip", workdir))
    assert outcome.status == "fail"
    assert outcome.detail.startswith("2 problem(s) over 5 loads: a refusing callable from path raised "), outcome
    assert "a refusing callable from path raised ValueError: no thanks" in outcome.detail
    assert "a refusing callable from mmap raised ValueError: no thanks" in outcome.detail
    assert "from BytesIO" not in outcome.detail  # BytesIO is read with the first form only


def test_bytesio_is_read_with_the_first_form_every_form_from_path_and_mmap(manifest: dict, workdir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that damages what it reads from a BytesIO fails the check through the first form."""
    from harness.checks import _devices

    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    forms = _devices.forms_for(ctx.fmt)
    assert [(f.label, s) for f, s in _devices.pairs(ctx.fmt)] == (
        [(forms[0].label, s) for s in ("path", "BytesIO", "mmap")] + [(f.label, s) for f in forms[1:]
                                                                       for s in ("path", "mmap")])
    real = ctx.fmt.open

    def damaging(path: Path, request: Any) -> Any:
        loaded = real(path, request)
        if request.source == "BytesIO":
            next(t for t in loaded.values() if torch.is_tensor(t) and t.is_floating_point()).view(-1)[0] += 1
        return loaded

    monkeypatch.setattr(ctx.fmt, "open", damaging)
    outcome = run("map_location", ctx)
    assert outcome.status == "fail" and outcome.detail.startswith(f"1 problem(s) over {2 * len(forms) + 1} loads: "
                                                                  f"{forms[0].label} from BytesIO: "), outcome
    assert _devices.sources_text(ctx.fmt) == f"path/mmap; {forms[0].label} from BytesIO"


def test_optimizer_device_without_tensor_steps_skips(manifest: dict, workdir: Path) -> None:
    """SGD keeps no step: nothing to say about its device, said as a skip (the resume still ran)."""
    outcome = run("optimizer_device", context(manifest, "simple", "training_checkpoint", workdir))
    assert outcome.status == "skip" and "within" not in outcome.detail
    assert outcome.detail.startswith("the optimizer state holds no tensor step (SGD, or a release that keeps it a "
                                     "number): no step device to check; cuda:0-tagged checkpoint mapped to cpu: ")


def test_optimizer_device_counts_the_steps(manifest: dict, workdir: Path) -> None:
    outcome = run("optimizer_device", context(manifest, "tied", "training_checkpoint", workdir))
    assert outcome.status == "pass", outcome
    assert " tensor step(s) on cpu" in outcome.detail and not outcome.detail.startswith("0 ")


# -- the details a user reads: counts and names, not only the status --------------------------------


def test_tensors_pass_says_what_was_compared(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    fingerprint, metadata = ctx.entry["fingerprint"], ctx.entry["metadata"]
    assert fingerprint["tensors"] and fingerprint["scalars"] and metadata
    outcome = run("tensors", ctx)
    assert outcome == Outcome(
        "pass", f"{len(fingerprint['tensors'])} tensors and {len(fingerprint['scalars'])} values identical; "
                f"_metadata of {len(metadata)} state_dict(s) identical")


def test_tensors_failure_counts_the_problems_over_the_tensors(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "broken_change_metadata", workdir)
    outcome = run("tensors", ctx)
    total = len(ctx.entry["fingerprint"]["tensors"])
    assert outcome.status == "fail"
    assert outcome.detail == f"1 problem(s) over {total} tensors: state_dict._metadata (module versions) differ"


class _Resaving:
    """A format wrapper whose second save changes what it saves (``change`` maps the payload)."""

    def __init__(self, fmt: Format, change: Any) -> None:
        self._fmt, self._change = fmt, change

    def save(self, payload: Any, path: Path) -> None:
        self._fmt.save(self._change(payload), path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)


def _untied(state: Any) -> Any:
    out = type(state)((k, v.detach().clone()) for k, v in state.items())
    out._metadata = getattr(state, "_metadata", None)
    return out


def test_resave_that_unties_fails_naming_the_sharing(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outcome = run("resave", dataclasses.replace(ctx, fmt=_Resaving(ctx.fmt, _untied)))
    total = len(ctx.actual["tensors"])
    assert outcome.status == "fail"
    assert outcome.detail == f"1 problem(s) over {total} tensors: storage sharing changed on the second round trip"


def test_resave_that_changes_a_value_fails_naming_it(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    outcome = run("resave", dataclasses.replace(ctx, fmt=_Resaving(ctx.fmt, lambda c: {**c, "epoch": -1})))
    total = len(ctx.actual["tensors"])
    assert outcome.status == "fail"
    assert outcome.detail == f"1 problem(s) over {total} tensors: non-tensor values changed on the second round trip"


def test_resave_pass_counts_the_tensors(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outcome = run("resave", ctx)
    assert outcome.status == "pass"
    assert outcome.detail == f"{len(ctx.actual['tensors'])} tensors unchanged after a second save and load"


def test_lossy_resave_names_the_missing_tensor(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "broken_lossy_resave", workdir)
    outcome = run("resave", ctx)
    last = list(ctx.actual["tensors"])[-1]
    # the tied case's last entry is the tied head: dropping it also breaks a sharing group
    assert outcome.detail == (f"2 problem(s) over {len(ctx.actual['tensors'])} tensors: missing {last}; "
                              f"storage sharing changed on the second round trip")


def test_sharing_details_name_groups_bytes_and_span(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    bound = ctx.actual["view_bytes_bound"]
    groups = len({info["share_group"] for info in ctx.actual["tensors"].values()
                  if sum(i["share_group"] == info["share_group"] for i in ctx.actual["tensors"].values()) > 1})
    assert groups >= 1
    stored = ctx.fmt.stored_tensor_bytes(ctx.artifact)
    outcome = run("sharing", ctx)
    assert outcome.detail == f"{groups} shared group(s) kept; {stored} tensor bytes stored for a {bound}-byte span"
    too_many = allowed_bytes(bound) + 1
    grown = run("sharing", dataclasses.replace(ctx, fmt=_Measured(ctx.fmt, too_many)))
    assert grown.detail == (f"{groups} shared group(s) kept but the file stores {too_many} tensor bytes for a "
                            f"{bound}-byte span")
    known = run("sharing", dataclasses.replace(ctx, fmt=_Measured(ctx.fmt, too_many, "views saved whole")))
    assert known.detail == (f"{groups} shared group(s) kept; stores {too_many} bytes for a {bound}-byte span "
                            f"(known: views saved whole)")


def test_sharing_skip_says_there_is_nothing_to_compare(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = with_entry(ctx, fingerprint={**plain(ctx.entry["fingerprint"]), "tensors": {}})
    outcome = run("sharing", ctx)
    assert outcome.detail == "the producer's fingerprint lists no tensors: no sharing and no bytes to compare"


def test_mode_failures_count_and_name_the_modules(manifest: dict, workdir: Path) -> None:
    flipped = run("mode", ctx := context(manifest, "batchnorm", "broken_flip_mode", workdir))
    modes = ctx.entry["modes"]
    names = sorted(modes)
    assert flipped.detail == f"{len(names)} module(s) changed train/eval flag: {', '.join(names[:5])}"
    lost = run("mode", context(manifest, "batchnorm", "broken_not_a_module", workdir))
    assert lost.detail == (f"the loaded object is a OrderedDict, not a module: its {len(modes)} recorded flags "
                           f"are lost")


def test_mode_skips_for_formats_that_keep_no_modes(manifest: dict, workdir: Path) -> None:
    outcome = run("mode", context(manifest, "batchnorm", "state_dict_zip", workdir))
    assert outcome.status == "skip" and outcome.detail == "state_dict_zip does not keep module modes"


def test_outputs_details_count_and_place_the_difference(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outputs = ctx.stored["outputs"]
    assert run("outputs", ctx).detail == f"{len(outputs)} output(s) bit-identical"
    flipped = run("outputs", context(manifest, "tied", "broken_flip_bit", workdir))
    assert flipped.detail.startswith("not bit-identical in the same environment: max abs diff ")
    assert flipped.detail.rsplit(" at ", 1)[1] in outputs


def test_resume_details_say_bitexact_and_the_step(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    steps = ctx.case_section["steps"]
    assert run("resume", ctx) == Outcome(
        "pass", f"bitexact: true; step {steps + 1} after resume is bit-identical to an uninterrupted run")
    assert run("resume", context(manifest, "tied", "state_dict_zip", workdir)) == Outcome(
        "skip", "state_dict_zip holds no optimizer state")
    forgot = run("resume", ctx := context(manifest, "tied", "broken_forget_momentum", workdir))
    total = len(ctx.entry["next_step"])
    assert forgot.detail.startswith("bitexact: false; resumed step differs from the uninterrupted one: ")
    assert f" problem(s) over {total} tensors: " in forgot.detail and "values differ" in forgot.detail


def _cpu_labels() -> list[str]:
    labels = ["'cpu'", "torch.device('cpu')", "{'cuda:0': 'cpu'}", "lambda storage, loc: storage"]
    if compat.map_location_meta() is None:
        labels.append("'meta'")
    if compat.cuda_device_count():
        labels += ["'cuda:0'", "{'cpu': 'cuda:0'}"]
    return labels


def test_map_location_details_count_the_loads_and_name_the_forms(manifest: dict, workdir: Path) -> None:
    labels = _cpu_labels()
    outcome = run("map_location", context(manifest, "tied", "state_dict_zip", workdir))
    assert outcome == Outcome("pass", f"{len(labels) * 2 + 1} loads ({', '.join(labels)}) bit-identical from "
                                      f"path/mmap; 'cpu' from BytesIO")
    assert run("map_location", context(manifest, "tied", "whole_model_zip", workdir)) == Outcome(
        "skip", "whole_model_zip holds a module or program; map_location is checked on the formats that hold state")


class _Recording:
    """A format wrapper that records where it saves and which map_location each open is given."""

    def __init__(self, fmt: Format) -> None:
        self._fmt, self.saved, self.map_locations = fmt, [], []

    def save(self, payload: Any, path: Path) -> None:
        self.saved.append(path)
        self._fmt.save(payload, path)

    def open(self, path: Path, request: LoadRequest) -> Any:
        self.map_locations.append(request.map_location)
        return self._fmt.open(path, request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)


def test_resave_works_in_the_consumers_folder_with_its_map_location(manifest: dict, workdir: Path) -> None:
    """The second save goes to a resave-* folder inside the private work folder, and is loaded back with
    the map_location the consumer loads with."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir / "private", map_location="cpu")
    ctx.workdir.mkdir()
    recording = _Recording(ctx.fmt)
    assert run("resave", dataclasses.replace(ctx, fmt=recording)).status == "pass"
    (saved,) = recording.saved
    assert saved.parent.parent == ctx.workdir and saved.parent.name.startswith("resave-")
    assert saved.name == f"resaved{ctx.fmt.suffix}" and not saved.parent.exists()
    assert recording.map_locations == ["cpu"]


def test_resume_across_environments_says_whether_it_was_bit_exact(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    atol = float(ctx.case_section["resume_atol"])
    exact = run("resume", _foreign(ctx, next_step_by=0.0))
    assert exact == Outcome("pass", f"bitexact: true; resumed step within 0 of the producer's uninterrupted step "
                                    f"(atol {atol:g})")
    near = run("resume", _foreign(ctx, next_step_by=atol / 2))
    assert near.detail.startswith("bitexact: false; resumed step within ") and near.detail.endswith(f"(atol {atol:g})")
    far = run("resume", _foreign(ctx, next_step_by=atol * 4))
    assert re.fullmatch(rf"bitexact: false; resumed step is [0-9.e+-]+ away from the producer's uninterrupted step "
                        rf"at model\.\S+ \(atol {re.escape(f'{atol:g}')}\)", far.detail), far


def test_outputs_across_environments_say_how_far_and_where(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    atol = float(ctx.case_section["atol"])
    names = "|".join(map(re.escape, ctx.stored["outputs"]))
    far = run("outputs", _foreign(ctx, outputs_by=atol * 4))
    assert re.fullmatch(rf"max abs diff [0-9.e+-]+ at ({names}) exceeds atol {re.escape(f'{atol:g}')} across "
                        rf"environments", far.detail), far
    assert run("outputs", _foreign(ctx, outputs_by=0.0)) == Outcome(
        "pass", f"max abs diff 0 within atol {atol:g} across environments")


def test_a_format_without_training_state_is_an_error_naming_it(manifest: dict, workdir: Path) -> None:
    class _NoTrainingState(_WithoutRngState):
        def resumable(self, obj: Any) -> Any:
            return None

    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    outcome = run("resume", dataclasses.replace(ctx, fmt=_NoTrainingState(ctx.fmt)))
    assert outcome == Outcome("error", "RuntimeError: training_checkpoint holds optimizer state but gave no training "
                                       "state to resume from")


@pytest.mark.parametrize("p, random", [(0.0, False), (0.5, True), (1.0, True)])
def test_has_dropout_means_a_mask_is_drawn(p: float, random: bool) -> None:
    models = {"a": torch.nn.Linear(2, 2), "b": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(p))}
    assert has_dropout(models) is random
    assert has_dropout({"a": torch.nn.Sequential(torch.nn.Dropout2d(p))}) is random
    assert has_dropout({"a": torch.nn.Linear(2, 2)}) is False


def test_mode_names_at_most_five_changed_modules(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "batchnorm", "whole_model_zip", workdir)
    ghosts = {f"ghost{i}": True for i in range(7)}  # modules the loaded model lacks: their flag is "changed"
    outcome = run("mode", with_entry(ctx, modes={**plain(ctx.entry["modes"]), **ghosts}))
    assert outcome == Outcome("fail", "7 module(s) changed train/eval flag: ghost0, ghost1, ghost2, ghost3, ghost4")


def test_mode_reports_a_root_in_eval_mode(manifest: dict, workdir: Path) -> None:
    """The flipped load judged against flags recorded flipped: every flag kept, the root in eval mode."""
    ctx = context(manifest, "batchnorm", "broken_flip_mode", workdir)
    flipped = {name: not flag for name, flag in ctx.entry["modes"].items()}
    assert flipped["<root>"] is False
    outcome = run("mode", with_entry(ctx, modes=flipped))
    assert outcome == Outcome("pass", f"{len(flipped)} modules keep their flags (root in eval mode)")


@pytest.mark.parametrize("check, stored_key, atol_key", [("outputs", "outputs", "atol"),
                                                         ("resume", "next_step", "resume_atol")])
def test_a_difference_of_exactly_the_tolerance_passes(manifest: dict, workdir: Path, check: str, stored_key: str,
                                                      atol_key: str) -> None:
    """The tolerances are inclusive: a difference equal to atol passes, the next float above it fails."""
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    by = float(ctx.case_section[atol_key]) * 0.75
    shifted = _foreign(ctx, **{f"{stored_key}_by": by})
    worst, _ = max_abs_difference(shifted.stored[stored_key], ctx.stored[stored_key])
    at = dataclasses.replace(shifted, case_section={**plain(ctx.case_section), atol_key: worst})
    at.__dict__["stored"] = shifted.stored
    assert run(check, at).status == "pass"
    below = dataclasses.replace(at, case_section={**plain(ctx.case_section), atol_key: math.nextafter(worst, 0)})
    below.__dict__["stored"] = shifted.stored
    assert run(check, below).status == "fail"


@pytest.mark.parametrize("check, needs", [("outputs", True), ("resume", True), ("optimizer_device", True),
                                          ("tensors", False), ("resave", False), ("sharing", False)])
def test_checks_that_need_the_cases_code_skip_without_it(manifest: dict, workdir: Path, check: str,
                                                         needs: bool) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir, case_missing="cases.tied would not import")
    outcome = run(check, ctx)
    if needs:
        assert outcome == Outcome("skip", "needs the case's code: cases.tied would not import")
    else:
        assert outcome.status == "pass", outcome


def test_tensors_is_judged_under_every_load_mode() -> None:
    """consume runs it per load mode (the proof that the modes load the same object); the others once."""
    assert [c.name for c in CHECKS if c.every_load_mode] == ["tensors"]


@pytest.mark.parametrize("field, value", [("dtype", "torch.int32"), ("shape", [1])])
def test_outputs_compare_dtype_and_shape_beside_the_bytes(manifest: dict, workdir: Path, field: str,
                                                          value: Any) -> None:
    """A recorded output whose dtype or shape differs fails even where the bytes hash the same."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    recorded = {name: {**plain(d), field: value} for name, d in ctx.case_section["outputs"].items()}
    outcome = run("outputs", with_entry(ctx, outputs=recorded))
    assert outcome.status == "fail" and outcome.detail.startswith("not bit-identical in the same environment")


def test_restore_without_the_cases_code_names_why(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    state = training_state(ctx, ctx.loaded)
    with pytest.raises(RuntimeError, match=r"^resuming needs the case's code: cases.tied would not import$"):
        restore(dataclasses.replace(ctx, case=None, case_missing="cases.tied would not import"), state)


def test_outputs_ignore_the_layout_of_bit_identical_values(manifest: dict, workdir: Path) -> None:
    """Same dtype, shape and bytes pass whatever stride or requires_grad was recorded (a kernel may lay out
    the same values differently)."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    recorded = {name: {**plain(d), "stride": [7, 7], "requires_grad": not d["requires_grad"]}
                for name, d in ctx.case_section["outputs"].items()}
    outcome = run("outputs", with_entry(ctx, outputs=recorded))
    assert outcome == Outcome("pass", f"{len(recorded)} output(s) bit-identical")


@pytest.mark.parametrize("changes, status", [({"dtype": "torch.float64"}, "fail"), ({"shape": [1]}, "fail"),
                                             ({"stride": [7, 7], "requires_grad": True}, "pass")])
def test_resume_compares_dtype_shape_and_bytes_of_the_next_step(manifest: dict, workdir: Path,
                                                                changes: dict, status: str) -> None:
    """The resumed step is held to the recorded dtype, shape and bytes; layout and requires_grad may differ."""
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    recorded = {name: {**plain(d), **changes} for name, d in ctx.entry["next_step"].items()}
    outcome = run("resume", with_entry(ctx, next_step=recorded))
    assert outcome.status == status, outcome
    if status == "fail":
        assert outcome.detail.startswith(f"bitexact: false; resumed step differs from the uninterrupted one: "
                                         f"{len(recorded)} problem(s) over {len(recorded)} tensors: ")


def test_resume_leaves_the_shared_load_untouched(manifest: dict, workdir: Path) -> None:
    """optimizer.load_state_dict shares the loaded tensors and step() updates them in place: the resume
    works on a deep copy, so the checks after it see the load as loaded."""
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    before = fingerprint(ctx.fmt.contents(ctx.loaded))
    assert run("resume", ctx).status == "pass"
    assert fingerprint(ctx.fmt.contents(ctx.loaded)) == before


# -- partial:<scenario>, in-process on the fast artifacts --------------------------------------------


@pytest.mark.parametrize("case, scenario, fmt, words", [
    ("simple", "bare_into_dataparallel", "state_dict_zip", "fix detected: add 'module.' to every key"),
    ("simple", "bare_into_dataparallel", "training_checkpoint", "fix detected: add 'module.' to every key"),
    ("batchnorm", "meta_assign", "state_dict_legacy", "assign=True into a meta model: "),
])
def test_partial_checks_run_on_the_saved_state_dict(manifest: dict, workdir: Path, case: str, scenario: str,
                                                    fmt: str, words: str) -> None:
    """The state_dict comes from the weights file, or from the training checkpoint's model state."""
    check = CHECKS.get(f"partial:{scenario}")
    assert check.name == f"partial:{scenario}" and check.description == check.scenario.description
    ctx = context(manifest, case, fmt, workdir)
    assert check.concerns(ctx.entry) and not check.concerns({**ctx.entry, "case": "tied"})
    outcome = run(f"partial:{scenario}", ctx)
    assert outcome.status == "pass" and words in outcome.detail, outcome


def test_a_check_concerns_every_artifact_unless_it_narrows_that(manifest: dict) -> None:
    """A check that does not override ``concerns`` writes a record for every artifact: every case and format."""
    general = [c for c in CHECKS if type(c).concerns is Check.concerns]
    assert {"tensors", "outputs", "sharing", "resave"} <= {c.name for c in general}
    pairs = [("simple", "state_dict_zip"), ("tied", "whole_model_zip"), ("batchnorm", "training_checkpoint")]
    entries = [entry_of(manifest, case, fmt) for case, fmt in pairs]
    assert all(check.concerns(entry) for check in general for entry in entries)


def test_partial_checks_skip_formats_without_one_state_dict(manifest: dict, workdir: Path) -> None:
    outcome = run("partial:bare_into_dataparallel", context(manifest, "simple", "whole_model_zip", workdir))
    assert outcome == Outcome("skip", "whole_model_zip holds no single-model state_dict")


def test_partial_checks_say_why_they_cannot_run(manifest: dict, workdir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    check = CHECKS.get("partial:bare_into_dataparallel")
    ctx = context(manifest, "simple", "state_dict_zip", workdir)
    monkeypatch.setattr(check, "scenario", dataclasses.replace(check.scenario, unavailable=lambda: "not here"))
    assert run(check.name, ctx) == Outcome("skip", "not here")
    monkeypatch.undo()
    not_a_mapping = dataclasses.replace(ctx, loaded=[torch.zeros(1)])
    assert run(check.name, not_a_mapping) == Outcome("skip", "state_dict_zip gave no state_dict to load")
    # called past consume's needs_case skip, the check names the broken invariant
    with pytest.raises(AssertionError, match=r"^needs_case: consume skips this check without the case's code"):
        check.run(dataclasses.replace(ctx, case=None))


def test_the_fast_artifacts_cover_every_broken_format(manifest: dict) -> None:
    saved = {e["format"] for e in manifest["entries"] if e["status"] == "ok"}
    assert set(BROKEN) <= saved


# -- the declared check order -------------------------------------------------------------------------


def _check(name: str, after: tuple[str, ...] = ()) -> Check:
    return type(f"C_{name}", (Check,), {"name": name, "after": after})()


def test_checks_run_in_declared_order_not_file_order() -> None:
    """A check comes after every check it names; a name that is not there, or its own, is ignored."""
    checks = [_check("b", after=("c",)), _check("a", after=("a",)), _check("c", after=("missing",))]
    assert [c.name for c in ordered(checks)] == ["a", "c", "b"]
    names = CHECKS.names()
    assert names.index("resave") < names.index("resume")
    with CHECKS.temporarily(_check("aaa_first_by_name", after=("tensors",))):
        names = CHECKS.names()
        assert names.index("tensors") < names.index("aaa_first_by_name")


def test_a_cycle_in_the_declared_order_is_an_error() -> None:
    with pytest.raises(HarnessError) as raised:
        ordered([_check("w"), _check("x", after=("y", "w")), _check("y", after=("x",))])
    assert str(raised.value) == "the checks' declared order has a cycle: x after ['y'], y after ['x']"


# -- the device checks' wording ------------------------------------------------------------------------


@pytest.mark.parametrize("count, words", [(1, "t0"), (3, "t0, t1, t2"), (4, "t0, t1, t2 (+1)"),
                                          (6, "t0, t1, t2 (+3)")])
def test_device_problems_name_three_tensors_and_count_the_rest(count: int, words: str) -> None:
    assert map_location_check._names([f"t{i}" for i in range(count)]) == words


@pytest.mark.parametrize("text, words", [
    ("a  b\n\tc", "a b c"),
    ("x" * 160, "x" * 160),
    ("x" * 161, "x" * 159 + "…"),
    ("y " * 100, ("y " * 80)[:159] + "…"),
])
def test_device_errors_are_cut_to_160_characters(text: str, words: str) -> None:
    assert map_location_check.short(ValueError(text)) == words


class _MisTagging:
    """A format whose CUDA-tagged copy reads back with the wrong locations."""

    def __init__(self, fmt: Format, locations: list[str]) -> None:
        self._fmt, self._locations = fmt, locations

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def retag(self, source: Path, target: Path, location: str) -> list[cuda_tags.StorageRecord]:
        records = self._fmt.retag(source, target, location)
        return [dataclasses.replace(r, location=where) for r, where in zip(records, self._locations)]


@pytest.mark.parametrize("wrong, words", [
    ({0: "cpu", 2: "cpu"}, "2× cpu, {rest}× cuda:0"),
    ({0: "cuda:1"}, "{rest}× cuda:0, 1× cuda:1"),
    ({}, "no storages"),
])
def test_a_wrong_read_back_names_the_locations_it_found(manifest: dict, workdir: Path, wrong: dict,
                                                        words: str) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    count = len(ctx.fmt.storage_locations(ctx.artifact))
    locations = [wrong.get(i, "cuda:0") for i in range(count)] if wrong else []
    outcome = run("optimizer_device", dataclasses.replace(ctx, fmt=_MisTagging(ctx.fmt, locations)))
    shows = words.format(rest=count - len(wrong))
    assert outcome == Outcome("fail", f"could not make a CUDA-tagged copy: read-back of the cuda:0 copy shows {shows}, "
                                      f"not {count} storages on cuda:0")


# -- optimizer_device's GPU resume, its logic on the CPU ------------------------------------------------


class _OnTheCpu:
    """A format that records each load's map_location and loads onto the CPU instead."""

    def __init__(self, fmt: Format, asked: list[tuple[str, Any]]) -> None:
        self._fmt, self._asked = fmt, asked

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def open(self, path: Path, request: LoadRequest) -> Any:
        self._asked.append(("load", request.map_location))
        return self._fmt.open(path, dataclasses.replace(request, map_location="cpu"))


@pytest.fixture
def gpu_resume(manifest: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Context, list]:
    """The tied training checkpoint's context with every device resume_on_cuda asks for recorded and
    served on the CPU: the GPU resume's decisions and wording, checked without a GPU."""
    asked: list[tuple[str, Any]] = []
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    real_restore, real_resume = optimizer_device.restore, optimizer_device.resume_one_step

    def restore_on_cpu(the_ctx: Context, state: Any, device: str = "default") -> Any:
        asked.append(("restore", device))
        return real_restore(the_ctx, state, "cpu")

    def resume_on_cpu(the_ctx: Context, state: Any, device: str = "default") -> Any:
        asked.append(("resume", device))
        return real_resume(the_ctx, state, "cpu")

    monkeypatch.setattr(optimizer_device, "restore", restore_on_cpu)
    monkeypatch.setattr(optimizer_device, "resume_one_step", resume_on_cpu)
    return dataclasses.replace(ctx, fmt=_OnTheCpu(ctx.fmt, asked)), asked


CUDA_STEPS = [("load", "cuda:0"), ("restore", "cuda:0"), ("resume", "cuda:0")]


def test_gpu_resume_within_tolerance_says_how_close(gpu_resume: tuple[Context, list]) -> None:
    ctx, asked = gpu_resume
    assert optimizer_device.resume_on_cuda(ctx) == (None, "resumed on cuda:0 within 0 (step stays on cpu)", True)
    assert asked == CUDA_STEPS


def test_gpu_resume_is_held_to_resume_atol(gpu_resume: tuple[Context, list]) -> None:
    ctx, asked = gpu_resume
    atol = float(ctx.case_section["resume_atol"])
    shifted = _foreign(ctx, next_step_by=atol * 0.75)
    worst, _ = max_abs_difference(shifted.stored["next_step"], ctx.stored["next_step"])
    at = dataclasses.replace(ctx, case_section={**plain(ctx.case_section), "resume_atol": worst})
    at.__dict__["stored"] = shifted.stored
    assert optimizer_device.resume_on_cuda(at) == (None, f"resumed on cuda:0 within {worst:.3g} (step stays on cpu)",
                                                   True)
    below = dataclasses.replace(at, case_section={**plain(ctx.case_section), "resume_atol": atol / 2})
    below.__dict__["stored"] = shifted.stored
    problem, note, compared = optimizer_device.resume_on_cuda(below)
    assert re.fullmatch(rf"resumed on cuda:0, {re.escape(f'{worst:.3g}')} away from the producer's next step at "
                        rf"model\.\S+ \(atol {re.escape(f'{atol / 2:g}')}\)", problem or ""), problem
    assert (note, compared) == ("", True)
    assert asked == CUDA_STEPS * 2


def test_gpu_resume_without_a_stored_next_step_compares_nothing(gpu_resume: tuple[Context, list]) -> None:
    ctx, asked = gpu_resume
    ctx.__dict__["stored"] = {k: v for k, v in ctx.stored.items() if k != "next_step"}
    assert optimizer_device.resume_on_cuda(ctx) == (None, "the producer stored no next step", False)
    assert asked == CUDA_STEPS[:2]


def test_gpu_resume_with_dropout_compares_nothing(gpu_resume: tuple[Context, list],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _ = gpu_resume
    seen = []
    monkeypatch.setattr(optimizer_device, "has_dropout", lambda models: seen.append(sorted(models)) or True)
    assert optimizer_device.resume_on_cuda(ctx) == (
        None, "step on cpu after loading onto cuda:0, but dropout draws from the CUDA generator", False)
    assert seen == [sorted(ctx.case.models)]


def test_gpu_resume_with_a_step_off_the_cpu_fails(gpu_resume: tuple[Context, list],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, asked = gpu_resume
    monkeypatch.setattr(optimizer_device, "steps_off_cpu", lambda optimizers: [f"cuda:0 ({len(optimizers)})"])
    assert optimizer_device.resume_on_cuda(ctx) == (
        "map_location='cuda:0' then optimizer.load_state_dict put step on ['cuda:0 (1)']", "", True)
    assert asked == CUDA_STEPS[:2]


@pytest.mark.parametrize("answer, status, ending", [
    (("resumed on cuda:0, 0.5 away", "", True), "fail", None),
    ((None, "the producer stored no next step", False), "skip", "; GPU resume not compared: the producer stored no "
                                                                 "next step"),
    ((None, "resumed on cuda:0 within 0 (step stays on cpu)", True), "pass", "; resumed on cuda:0 within 0 (step "
                                                                              "stays on cpu)"),
])
def test_optimizer_device_with_a_gpu_reports_the_gpu_resume(manifest: dict, workdir: Path,
                                                            monkeypatch: pytest.MonkeyPatch, answer: tuple,
                                                            status: str, ending: str | None) -> None:
    """With a GPU, run() adds resume_on_cuda's verdict to the CPU one: a problem fails, nothing compared
    skips with the reason, a comparison appends its note."""
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    cpu_only = run("optimizer_device", ctx)
    asked: list[Context] = []
    monkeypatch.setattr(optimizer_device, "compat", type("OneGpu", (), {"cuda_device_count": staticmethod(lambda: 1)}))
    monkeypatch.setattr(optimizer_device, "resume_on_cuda", lambda the_ctx: asked.append(the_ctx) or answer)
    outcome = run("optimizer_device", ctx)
    assert len(asked) == 1 and isinstance(asked[0], Context) and asked[0].entry == ctx.entry
    assert cpu_only.status == "pass" and outcome.status == status, outcome
    assert outcome.detail == (answer[0] if ending is None else cpu_only.detail + ending)


def test_a_context_load_hands_the_format_its_mode_case_and_trust(manifest: dict, workdir: Path) -> None:
    """DCP loads into the case's fresh model: Context.load must pass the case on, with the mode and trust."""
    seen: list[tuple[Path, LoadRequest]] = []
    ctx = context(manifest, "tied", "training_checkpoint", workdir)

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(ctx.fmt, name)

        def open(self, path: Path, request: LoadRequest) -> Any:
            seen.append((path, request))
            return ctx.fmt.open(path, request)

    recording = dataclasses.replace(ctx, fmt=Recording())
    recording.load("cpu", source="BytesIO")
    (path, request), = seen
    assert path == ctx.artifact and request.case is ctx.case is not None
    assert request == LoadRequest(ctx.load_mode, "cpu", "BytesIO", ctx.case, trusted=ctx.trusted)


def test_a_partial_check_is_its_scenario() -> None:
    """Built anew (the registered ones are built at import): its name, description and cases are the scenario's."""
    from harness.checks.partial_load import PartialLoadCheck
    from harness.partial import SCENARIOS

    scenario = SCENARIOS.get("bare_into_dataparallel")
    check = PartialLoadCheck(scenario)
    assert (check.scenario, check.name, check.description) == (scenario, "partial:bare_into_dataparallel",
                                                                 scenario.description)
    assert check.concerns({"case": "simple"}) and not check.concerns({"case": "tied"})


@pytest.mark.parametrize("value, words", [
    ("x" * 40, "x" * 40),
    ("x" * 41, "x" * 37 + "..."),
    ([1, 2], "[1, 2]"),
    (None, "None"),
])
def test_fingerprint_fields_are_shown_up_to_40_characters(value: Any, words: str) -> None:
    assert _short(value) == words


@pytest.mark.parametrize("count, words", [(5, "missing k0, k1, k2, k3, k4"), (6, "missing k0, k1, k2, k3, k4 (+1)"),
                                          (8, "missing k0, k1, k2, k3, k4 (+3)")])
def test_fingerprint_differences_name_five_tensors_and_count_the_rest(count: int, words: str) -> None:
    assert fingerprint_differences({f"k{i}": {} for i in range(count)}, {}) == [words]


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("want, got, result", [
    ({"a": [1.0, 2.0]}, {"a": [1.0, 2.0]}, (0.0, "")),
    ({"a": [INF, -INF, NAN, 1.0]}, {"a": [INF, -INF, NAN, 1.0]}, (0.0, "")),
    ({"a": [1.0, 2.0], "b": [0.0]}, {"a": [1.0, 2.25], "b": [-0.5]}, (0.5, "b")),
    ({"a": [1.0, 2.0], "b": [3.0]}, {"a": [1.0, 2.75], "b": [3.5]}, (0.75, "a")),
    ({"a": [NAN], "b": [1.0]}, {"a": [1.0], "b": [1.5]}, (INF, "a")),
    ({"a": [1.0]}, {"a": [NAN]}, (INF, "a")),
    ({"a": [INF]}, {"a": [1.0]}, (INF, "a")),
    ({"a": [-INF]}, {"a": [INF]}, (INF, "a")),
    ({"e": [], "b": [1.0]}, {"e": [], "b": [1.25]}, (0.25, "b")),
    ({"i": torch.tensor([3, -2])}, {"i": torch.tensor([3, 5])}, (7.0, "i")),
    ({"c": torch.tensor([1 + 1j])}, {"c": torch.tensor([1 + 4j])}, (3.0, "c")),
])
def test_max_abs_difference_over_matching_tensors(want: dict, got: dict, result: tuple[float, str]) -> None:
    """The worst absolute difference and where; equal values (infinities too) and NaN against NaN are none."""
    as_tensors = [{k: v if isinstance(v, torch.Tensor) else torch.tensor(v) for k, v in d.items()} for d in (want, got)]
    assert max_abs_difference(*as_tensors) == result


@pytest.mark.parametrize("got, words", [
    (torch.zeros(3), "a: (2,)/torch.float32 vs (3,)/torch.float32"),
    (torch.zeros(2, dtype=torch.float64), "a: (2,)/torch.float32 vs (2,)/torch.float64"),
])
def test_max_abs_difference_of_another_shape_or_dtype_is_infinite(got: torch.Tensor, words: str) -> None:
    assert max_abs_difference({"a": torch.zeros(2)}, {"a": got}) == (INF, words)


class _Watching:
    """A format wrapper that records each retag's target and location and each open's path and map_location."""

    def __init__(self, fmt: Format) -> None:
        self._fmt, self.retagged, self.opened = fmt, [], []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def retag(self, source: Path, target: Path, location: str) -> list[cuda_tags.StorageRecord]:
        self.retagged.append((target, location))
        return self._fmt.retag(source, target, location)

    def open(self, path: Path, request: LoadRequest) -> Any:
        self.opened.append((path, request.map_location))
        return self._fmt.open(path, request)


def test_optimizer_device_maps_its_cuda_tagged_copy_made_in_the_work_folder(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "training_checkpoint", workdir)
    watching = _Watching(ctx.fmt)
    assert run("optimizer_device", dataclasses.replace(ctx, fmt=watching)).status == "pass"
    ((copy_path, location),) = watching.retagged
    assert location == "cuda:0" and copy_path.parent.parent == ctx.workdir, watching.retagged
    assert copy_path.parent.name.startswith("cuda-tags-") and not copy_path.parent.exists()
    assert watching.opened[0] == (copy_path, "cpu")


def test_optimizer_device_names_every_device_a_step_landed_on(manifest: dict, workdir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optimizer_device, "steps_off_cpu", lambda optimizers: ["cuda:0", "cuda:1"])
    outcome = run("optimizer_device", context(manifest, "tied", "training_checkpoint", workdir))
    assert outcome == Outcome("fail", "after map_location='cpu' and optimizer.load_state_dict, step is not a CPU "
                                      "tensor: cuda:0, cuda:1")


# -- cuda_tagged: the copies, the default load and the wording -------------------------------------------


def test_cuda_tagged_pass_says_what_it_proved(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    storages = len(ctx.fmt.storage_locations(ctx.artifact))
    labels = [label for label in _cpu_labels() if "cuda:0'" not in label or label == "{'cuda:0': 'cpu'}"]
    devices = "cpu/meta" if "'meta'" in labels else "cpu"
    assert run("cuda_tagged", ctx) == Outcome("pass", (
        f"{storages} storages retagged cuda:0 and read back; default load raised the CUDA-deserialize error; "
        f"{len(labels) * 2 + 1} loads ({', '.join(labels)}) bit-identical onto {devices}; cuda:1 copy: "
        "{'cuda:1': 'cpu'} loads bit-identical, {'cuda:0': 'cpu'} does not match, {'cuda:1': 'cuda:0'} reached the "
        "deserializer as cuda:0 and raised the CUDA error"))


def test_cuda_tagged_loads_its_copies_made_in_the_work_folder(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    watching = _Watching(ctx.fmt)
    assert run("cuda_tagged", dataclasses.replace(ctx, fmt=watching)).status == "pass"
    (first, location), (second, other) = watching.retagged
    assert (location, other) == ("cuda:0", "cuda:1") and first.parent == second.parent
    assert first.parent.parent == ctx.workdir and first.parent.name.startswith("cuda-tags-")
    assert not first.parent.exists()
    assert {path for path, _ in watching.opened} == {first, second}


class _DefaultLoad:
    """A format whose load without a map_location (the default load) does something else."""

    def __init__(self, fmt: Format, default: Any) -> None:
        self._fmt, self._default = fmt, default

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def open(self, path: Path, request: LoadRequest) -> Any:
        if request.map_location is None:
            if isinstance(self._default, Exception):
                raise self._default
            request = dataclasses.replace(request, map_location=self._default)
        return self._fmt.open(path, request)


def test_cuda_tagged_default_load_that_succeeds_without_cuda_fails(manifest: dict, workdir: Path) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outcome = run("cuda_tagged", dataclasses.replace(ctx, fmt=_DefaultLoad(ctx.fmt, "cpu")))
    assert outcome == Outcome("fail", "default load of the cuda:0 copy succeeded without CUDA (expected PyTorch's "
                                      "CUDA error)")


def test_cuda_tagged_counts_every_problem_beyond_the_first_three(manifest: dict, workdir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The default load's problem comes first, then each damaged load of the cuda:0 copy."""
    monkeypatch.setattr(map_location_check, "forms", lambda: [_damaging_form(), _damaging_form()])
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    outcome = run("cuda_tagged", dataclasses.replace(ctx, fmt=_DefaultLoad(ctx.fmt, ValueError("z" * 300))))
    assert outcome.status == "fail", outcome
    assert outcome.detail.startswith(f"default load raised something else than 'Attempting to deserialize object on a "
                                     f"CUDA device': ValueError: {'z' * 188}; cuda:0 copy, lambda that flips a bit "
                                     f"from path: "), outcome
    assert outcome.detail.count("; cuda:0 copy, lambda that flips a bit from ") == 2
    assert outcome.detail.endswith(" (+3 more)"), outcome  # 3 + 2 damaged loads (BytesIO: first form only)


@pytest.mark.parametrize("default, first", [
    (None, "default load of the cuda:0 copy on a GPU raised {error}; "),
    ("cpu", "default load: {names} on cpu, not cuda:0; "),
])
def test_cuda_tagged_default_load_on_a_gpu_must_land_on_cuda_0(manifest: dict, workdir: Path,
                                                              monkeypatch: pytest.MonkeyPatch, default: Any,
                                                              first: str) -> None:
    """With a GPU (said to be there), the default load must put every tensor on cuda:0: here it raises
    PyTorch's CUDA error (cut to 200 characters), or a format that maps it lands on the CPU."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    expected_error = ""
    try:
        ctx.fmt.open(_devices_copy(ctx, workdir), LoadRequest(ctx.load_mode, None, "path", ctx.case, trusted=True))
    except Exception as exc:
        expected_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
    names = sorted(ctx.entry["fingerprint"]["tensors"])
    monkeypatch.setattr(compat, "cuda_device_count", lambda: 1)
    fmt = _DefaultLoad(ctx.fmt, default) if default else ctx.fmt
    outcome = run("cuda_tagged", dataclasses.replace(ctx, fmt=fmt))
    assert outcome.status == "fail", outcome
    words = first.format(error=expected_error, names=f"{', '.join(names[:3])} (+{len(names) - 3})")
    assert len(expected_error) == 200 and outcome.detail.startswith(words), outcome


def _devices_copy(ctx: Context, folder: Path) -> Path:
    return map_location_check.tagged_copy(ctx, folder, "cuda:0").path


class _RemapsTheCuda1Copy:
    """A format that loads its cuda:1 copy with another map_location (or raises) where ``table`` says so."""

    def __init__(self, fmt: Format, table: dict[str, Any]) -> None:
        self._fmt, self._table = fmt, table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fmt, name)

    def open(self, path: Path, request: LoadRequest) -> Any:
        instead = self._table.get(repr(request.map_location)) if path.name.startswith("cuda_1.") else None
        if isinstance(instead, Exception):
            raise instead
        if instead is not None:
            request = dataclasses.replace(request, map_location=instead)
        return self._fmt.open(path, request)


@pytest.mark.parametrize("table, detail", [
    ({"{'cuda:1': 'cpu'}": ValueError("no\n  way")}, "{'cuda:1': 'cpu'} on the cuda:1 copy raised ValueError: no way"),
    ({"{'cuda:1': 'cpu'}": {"cuda:1": "meta"}}, "{'cuda:1': 'cpu'}: {names} on meta, not cpu"),
    ({"{'cuda:0': 'cpu'}": "cpu"}, "{'cuda:0': 'cpu'} must not match a cuda:1 tag; got a CPU load"),
    ({"{'cuda:1': 'cuda:0'}": "cpu"}, "{'cuda:1': 'cuda:0'} reached the deserializers as {seen}; {'cuda:1': 'cuda:0'} "
                                      "without CUDA: expected PyTorch's CUDA error, got a successful load"),
])
def test_cuda_tagged_remap_problems_are_named(manifest: dict, workdir: Path, table: dict, detail: str) -> None:
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    names = sorted(ctx.entry["fingerprint"]["tensors"])
    words = re.escape(detail.replace("{names}", f"{', '.join(names[:3])} (+{len(names) - 3})")).replace(
        re.escape("{seen}"), r"\['cpu'(, 'cpu')*\]")
    outcome = run("cuda_tagged", dataclasses.replace(ctx, fmt=_RemapsTheCuda1Copy(ctx.fmt, table)))
    assert outcome.status == "fail" and re.fullmatch(words, outcome.detail), outcome


@pytest.mark.parametrize("table", [{}, {"{'cuda:1': 'cuda:0'}": "cpu"}])
def test_cuda_tagged_remap_on_a_gpu_must_land_on_cuda_0(manifest: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                       table: dict) -> None:
    """With one GPU (said to be there), {'cuda:1': 'cuda:0'} must load onto cuda:0 and {'cuda:0': 'cpu'} must
    raise PyTorch's no-such-device error; here the first raises the CUDA error (cut to 200 characters) or,
    remapped by the format, lands on the CPU."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    ctx = dataclasses.replace(ctx, fmt=_RemapsTheCuda1Copy(ctx.fmt, table))
    second = map_location_check.tagged_copy(ctx, workdir, "cuda:1")
    raised = map_location_check.attempt(ctx, second.path, {"cuda:1": "cuda:0"}).error or ""
    unmatched = map_location_check.attempt(ctx, second.path, {"cuda:0": "cpu"}).error
    names = sorted(ctx.entry["fingerprint"]["tensors"])
    monkeypatch.setattr(compat, "cuda_device_count", lambda: 1)
    words, problems = CHECKS.get("cuda_tagged")._remap(ctx, second)
    assert words.endswith("{'cuda:1': 'cuda:0'} reached the deserializer as cuda:0 and landed on cuda:0"), words
    first = (f"{{'cuda:1': 'cuda:0'}}: {', '.join(names[:3])} (+{len(names) - 3}) on cpu, not cuda:0" if table else
             f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {raised[:200]}")
    assert len(raised) > 200 or table
    assert problems[-2:] == [first, f"cuda:1 copy on a 1-GPU machine: expected 'torch.cuda.device_count() is', got "
                                    f"{unmatched}"]


@pytest.mark.parametrize("count, more", [(4, ""), (5, " (+1 more)"), (7, " (+3 more)")])
def test_summaries_show_four_problems_and_count_the_rest(count: int, more: str) -> None:
    problems = [f"p{i}" for i in range(count)]
    assert summarize(problems, 9) == f"{count} problem(s) over 9 tensors: p0; p1; p2; p3{more}"


@pytest.mark.parametrize("device, problems", [
    ("cpu", ["embed.weight: dtype torch.float32 != torch.float64", "embed.weight: values differ",
             "hidden.bias: shape [16] != [15]", "hidden.bias: values differ",
             "hidden.weight: stride [16, 1] != [1, 16]", "hidden.weight: values differ"]),
    ("meta", ["embed.weight: dtype torch.float32 != torch.float64", "hidden.bias: shape [16] != [15]",
              "hidden.weight: stride [16, 1] != [1, 16]"]),
])
def test_device_differences_name_dtype_shape_and_stride(manifest: dict, workdir: Path, device: str,
                                                        problems: list[str]) -> None:
    """On the CPU the values are compared too; on the meta device (no values) only the layout."""
    ctx = context(manifest, "tied", "state_dict_zip", workdir)
    loaded = dict(ctx.load(device))
    loaded["embed.weight"] = loaded["embed.weight"].double()
    loaded["hidden.weight"] = loaded["hidden.weight"].t()
    loaded["hidden.bias"] = loaded["hidden.bias"][:-1]
    assert map_location_check.differences(ctx, loaded, device) == problems
    loaded = dict(ctx.load("cpu"))
    loaded["hidden.bias"] = loaded["hidden.bias"].to("meta")
    assert map_location_check.differences(ctx, loaded, "cpu") == ["hidden.bias on meta, not cpu"]


def test_map_location_forms_say_which_kind_of_value_they_pass() -> None:
    """A format's loader is given only the kinds it takes (Capabilities.map_locations): each form's kind."""
    found = [(f.label, f.kind, f.device) for f in map_location_check.forms()]
    assert found[:4] == [("'cpu'", "str", "cpu"), ("torch.device('cpu')", "device", "cpu"),
                         ("{'cuda:0': 'cpu'}", "dict", "cpu"), ("lambda storage, loc: storage", "callable", "cpu")]
    assert [type(f.value()).__name__ for f in map_location_check.forms()[:4]] == ["str", "device", "dict", "function"]


def test_fingerprint_differences_list_missing_and_unexpected_names_first() -> None:
    found = fingerprint_differences({"a": {"dtype": "x"}, "z": {}}, {"a": {"dtype": "y"}, "b": {}})
    assert found == ["missing z", "unexpected b", "a: dtype x != y"]


def test_map_location_forms_add_meta_and_on_a_gpu_cuda_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """'meta' where the release maps to it; with a GPU (said to be there) 'cuda:0' and {'cpu': 'cuda:0'}."""
    monkeypatch.setattr(compat, "cuda_device_count", lambda: 1)
    found = [(f.label, f.value(), f.device, f.kind) for f in map_location_check.forms()[4:]]
    meta = [("'meta'", "meta", "meta", "meta")] if compat.map_location_meta() is None else []
    assert found == meta + [("'cuda:0'", "cuda:0", "cuda:0", "str"),
                            ("{'cpu': 'cuda:0'}", {"cpu": "cuda:0"}, "cuda:0", "dict")]


# -- the read-only Context, and a check that changes what was loaded gets its own copy ----------------

def _plain_check(name: str, after: tuple[str, ...] = ()) -> Check:
    return type(f"C_{name}", (Check,), {"name": name, "after": after})()


def _bare_context(loaded: Any, entry: dict[str, Any]) -> Context:
    return Context(fmt=None, entry=entry, case_section={"atol": 1e-5, "nested": {"k": [1]}}, artifact=Path("a"),
                   root=Path("."), loaded=loaded, load_mode="default", case=None, case_missing=None, producer={},
                   consumer={}, same_numerics=True, map_location=None, workdir=Path("."))


def test_the_context_is_read_only() -> None:
    entry = {"fingerprint": {"tensors": {"w": {"hash": "x"}}}, "metadata": {}}
    ctx = _bare_context({"w": torch.zeros(2)}, entry)
    with pytest.raises(TypeError):
        ctx.entry["fingerprint"]["tensors"]["w"]["hash"] = "forged"  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx.case_section["nested"]["k"] = [2]  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.loaded = None  # type: ignore[misc]
    assert ctx.entry["metadata"] == {} and entry["fingerprint"]["tensors"]["w"]["hash"] == "x"


def test_a_check_that_mutates_gets_its_own_copy() -> None:
    ctx = _bare_context({"w": torch.zeros(2)}, {})
    mutating = type("M", (Check,), {"name": "m", "mutates_loaded": True})()
    assert ctx.for_check(_plain_check("plain")) is ctx
    own = ctx.for_check(mutating)
    own.loaded["w"].add_(1)
    assert ctx.loaded["w"].sum() == 0 and own.loaded["w"].sum() == 2


def test_outcome_helpers_carry_exactly_their_detail() -> None:
    from harness.checks import failed, passed, skipped

    assert passed() == Outcome("pass", "") and passed("kept") == Outcome("pass", "kept")
    assert failed("lost") == Outcome("fail", "lost") and skipped("why") == Outcome("skip", "why")
