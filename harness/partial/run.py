"""Run one partial-load scenario: hold ``load_state_dict`` to the independently computed plan.

For a target built normally: ``strict=False`` must report exactly the planned missing and
unexpected keys (or raise naming every size mismatch), loaded values must be bit-identical to the
checkpoint and missing ones untouched; ``strict=True`` must raise naming every key (or succeed when
the plan is clean); the scenario's fix must then make the load work. For ``assign=True`` into a
meta-device target: every key is assigned without a copy, ``requires_grad`` is kept, and exactly
the non-persistent buffers are left on the meta device.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case
from harness.checks import Outcome, failed, passed
from harness.fingerprint import hash_tensor
from harness.partial import Scenario, fixes, targets
from harness.partial.expected import LoadPlan, non_persistent_buffers, plan, target_entries


class Mismatch(Exception):
    """What the release did differs from the plan; the message says how."""


def run_scenario(scenario: Scenario, source: Mapping[str, Any], case: Case) -> Outcome:
    """Pass with a one-line account of what happened, or fail naming the first difference."""
    try:
        detail = _run_assign(scenario, source, case) if scenario.assign else _run_plain(scenario, source, case)
    except Mismatch as exc:
        return failed(f"{exc} | {_plan_and_fix(scenario, source, case)}")
    return passed(detail)


def _plan_and_fix(scenario: Scenario, source: Mapping[str, Any], case: Case) -> str:
    """The plan and the fix of a scenario, for a failure's message: a failing check still says what to do."""
    try:
        expected = plan(source, scenario.build_target(case))
    except Exception as exc:  # the target does not even build: say so instead of the plan
        return f"plan unavailable: {type(exc).__name__}: {exc}"
    return f"plan: {expected.describe()} | fix: {scenario.fix or 'none needed'}"


# -- plain targets ------------------------------------------------------------------------------


def _run_plain(scenario: Scenario, source: Mapping[str, Any], case: Case) -> str:
    # one target, restored in place to its built values before each use (harness.partial.targets)
    target = targets.fresh(scenario, case)
    expected = plan(source, target)
    lenient = _check_lenient(target, source, expected)
    strict = _check_strict(targets.fresh(scenario, case), source, expected)
    fixed = _check_fix(scenario, targets.fresh(scenario, case), source, expected)
    # PyTorch's own message last: the record keeps one line, and the message is the longest part
    return " | ".join(part for part in (f"plan: {expected.describe()}", strict, fixed, lenient) if part)


def _check_lenient(target: nn.Module, source: Mapping[str, Any], expected: LoadPlan) -> str:
    before = _hashes(target)
    error, result = _load(target, source, strict=False)
    if expected.mismatched:
        if error is None:
            raise Mismatch(f"strict=False loaded although {_keys(expected.mismatched)} differ in shape")
        # strict=False raises for size mismatches only, and its message lists only them (2.5.1 … 2.14.1)
        _require_named(error, expected, "strict=False", keys=False)
        return f"strict=False raised as planned: {_flat(error)}"
    if error is not None:
        raise Mismatch(f"strict=False raised unplanned: {_flat(error)}")
    _same_keys("missing_keys", result.missing_keys, expected.missing)
    _same_keys("unexpected_keys", result.unexpected_keys, expected.unexpected)
    _require_values(target, source, expected.loaded, before, expected.missing)
    return (f"strict=False reported {len(expected.missing)} missing/{len(expected.unexpected)} unexpected as "
            f"planned, {len(expected.loaded)} values bit-identical, missing ones untouched")


def _check_strict(target: nn.Module, source: Mapping[str, Any], expected: LoadPlan) -> str:
    error, _ = _load(target, source, strict=True)
    if expected.clean:
        if error is not None:
            raise Mismatch(f"strict=True raised on a clean plan: {_flat(error)}")
        return "strict=True loaded"
    if error is None:
        raise Mismatch("strict=True loaded although the plan has missing, unexpected or mismatched keys")
    _require_named(error, expected, "strict=True")
    return "strict=True raised naming every key"


def _check_fix(scenario: Scenario, target: nn.Module, source: Mapping[str, Any], expected: LoadPlan) -> str:
    if scenario.fix == "drop_mismatched":
        kept, dropped = fixes.drop_mismatched(source, target)
        if sorted(dropped) != sorted(expected.mismatched):
            raise Mismatch(f"drop_mismatched dropped {_keys(dropped)}, planned {_keys(expected.mismatched)}")
        before = _hashes(target)
        error, result = _load(target, kept, strict=False)
        if error is not None:
            raise Mismatch(f"after drop_mismatched, strict=False still raised: {_flat(error)}")
        _same_keys("missing_keys after drop_mismatched", result.missing_keys,
                   expected.missing + tuple(expected.mismatched))
        _require_values(target, kept, expected.loaded, before, expected.missing + tuple(expected.mismatched))
        return f"fix drop_mismatched dropped {_keys(dropped)} → strict=False loads, they keep the model's init"
    if scenario.fix == "prefix":
        fix = fixes.detect_prefix(source, target)
        if fix is None:
            raise Mismatch("detect_prefix found no known prefix that makes the keys fit")
        fixed = fix.apply(source)
        after = plan(fixed, target)
        if not after.clean:
            raise Mismatch(f"after {fix.describe()} the plan is still not clean: {after.describe()}")
        error, _ = _load(target, fixed, strict=True)
        if error is not None:
            raise Mismatch(f"after {fix.describe()} strict=True raised: {_flat(error)}")
        # against the checkpoint's own tensors under the renamed keys, not the fix's output
        renamed = {_renamed(fix, key): value for key, value in source.items()}
        _require_values(target, renamed, after.loaded, {}, ())
        return f"fix detected: {fix.describe()} → strict=True loads, values bit-identical"
    return ""


def _renamed(fix: fixes.PrefixFix, key: str) -> str:
    """``key`` as the prefix fix must rename it (worked out here, independently of the fix's code)."""
    if fix.action == "add":
        return fix.prefix + key
    return key[len(fix.prefix):] if key.startswith(fix.prefix) else key


# -- meta-device targets ------------------------------------------------------------------------


def _run_assign(scenario: Scenario, source: Mapping[str, Any], case: Case) -> str:
    with torch.device("meta"):
        target = scenario.build_target(case)
    expected = plan(source, target)
    grads = {key: t.requires_grad for key, t in _named_tensors(target)}
    left_expected = sorted(set(non_persistent_buffers(target)) | set(expected.missing))
    error, result = _load(target, source, strict=expected.clean, assign=True)
    if error is not None:
        raise Mismatch(f"assign=True raised: {_flat(error)}")
    _same_keys("assign=True missing_keys", result.missing_keys, expected.missing)
    _same_keys("assign=True unexpected_keys", result.unexpected_keys, expected.unexpected)
    tensors = dict(_named_tensors(target))
    copied = [k for k in expected.loaded if _data_ptr(tensors[k]) != _data_ptr(source[k])]
    if copied:
        raise Mismatch(f"assign=True copied instead of assigning: {_keys(copied)}")
    _require_values(target, source, expected.loaded, {}, ())
    lost = [k for k in expected.loaded if tensors[k].requires_grad != grads[k]]
    if lost:
        raise Mismatch(f"assign=True changed requires_grad of {_keys(lost)}")
    left = sorted(k for k, t in tensors.items() if t.is_meta)
    if left != left_expected:
        raise Mismatch(f"left on meta: {_keys(left) or 'nothing'}; planned (non-persistent buffers, missing keys): "
                       f"{_keys(left_expected) or 'nothing'}")
    note = (f"; left on meta as planned: {_keys(left)} (not in the checkpoint: re-create after loading)" if left
            else "; nothing left on meta")
    written = metadata_written_by_assign(lambda: scenario.build_target(case), source)
    if written:
        note += f"; it writes {', '.join(written)} into the given state_dict's _metadata"
    return f"assign=True into a meta model: {len(expected.loaded)} tensors assigned without a copy{note}"


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer, persistent or not, under its dotted name."""
    seen: set[str] = set()
    for key, tensor in list(model.named_parameters(remove_duplicate=False)) + list(
            model.named_buffers(remove_duplicate=False)):
        if key not in seen:
            seen.add(key)
            yield key, tensor


def _data_ptr(tensor: torch.Tensor) -> int:
    return compat.untyped_storage(tensor).data_ptr() + tensor.storage_offset() * tensor.element_size()


# -- shared ---------------------------------------------------------------------------------------


def _load(target: nn.Module, state: Mapping[str, Any], strict: bool, assign: bool = False) -> tuple[Optional[str], Any]:
    """``load_state_dict`` on a copy of ``state`` (``assign=True`` writes into ``_metadata``): (error, result)."""
    kwargs = {"assign": True} if assign else {}
    try:
        return None, target.load_state_dict(own_copy(state), strict=strict, **kwargs)
    except RuntimeError as exc:
        return str(exc), None


def own_copy(state: Mapping[str, Any]) -> Any:
    """A new dict of the same tensors with its own ``_metadata``: nothing done to it reaches ``state``."""
    copy = collections.OrderedDict(state)
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        copy._metadata = collections.OrderedDict((k, dict(v)) for k, v in metadata.items())  # type: ignore[attr-defined]
    return copy


def metadata_written_by_assign(target_factory: Any, state: Mapping[str, Any]) -> list[str]:
    """Keys ``load_state_dict(assign=True)`` adds to the ``_metadata`` entries of the dict it is given."""
    probe = own_copy(state)
    before = {k: set(v) for k, v in getattr(probe, "_metadata", {}).items()}
    with torch.device("meta"):
        target = target_factory()
    try:
        target.load_state_dict(probe, strict=False, assign=True)
    except RuntimeError:
        return []
    after = getattr(probe, "_metadata", {})
    return sorted({key for name, entry in after.items() for key in set(entry) - before.get(name, set())})


def _require_named(error: str, expected: LoadPlan, how: str, keys: bool = True) -> None:
    """The error names every size-mismatched key (and, with ``keys``, every missing and unexpected one)."""
    absent = [f'missing "{k}"' for k in expected.missing
              if keys and f'"{k}"' not in _section(error, "Missing key(s)")]
    absent += [f'unexpected "{k}"' for k in expected.unexpected
               if keys and f'"{k}"' not in _section(error, "Unexpected key(s)")]
    for key, (have, want) in expected.mismatched.items():
        wording = f"size mismatch for {key}: copying a param with shape {torch.Size(have)} from checkpoint, " \
                  f"the shape in current model is {torch.Size(want)}"
        if wording not in error:
            absent.append(f"size mismatch for {key} {have}→{want}")
    if absent:
        raise Mismatch(f"{how} error does not name {', '.join(absent[:4])}" +
                       (f" (+{len(absent) - 4})" if len(absent) > 4 else "") + f": {_flat(error)}")


def _section(error: str, title: str) -> str:
    """The line of a load_state_dict error that starts with ``title`` ('' when there is none)."""
    for line in error.splitlines():
        if line.strip().startswith(title):
            return line
    return ""


def _same_keys(what: str, actual: list[str], planned: tuple[str, ...]) -> None:
    if sorted(actual) != sorted(planned):
        extra, absent = sorted(set(actual) - set(planned)), sorted(set(planned) - set(actual))
        raise Mismatch(f"{what} differ from the plan: reported but not planned {_keys(extra) or '-'}; "
                       f"planned but not reported {_keys(absent) or '-'}")


def _hashes(model: nn.Module) -> dict[str, str]:
    return {k: hash_tensor(t) for k, t in target_entries(model) if isinstance(t, torch.Tensor)}


def _require_values(target: nn.Module, source: Mapping[str, Any], loaded: tuple[str, ...],
                    before: dict[str, str], untouched: tuple[str, ...]) -> None:
    now = dict(target_entries(target))
    differ = [k for k in loaded
              if isinstance(source[k], torch.Tensor) and hash_tensor(now[k]) != hash_tensor(source[k])]
    if differ:
        raise Mismatch(f"loaded values differ from the checkpoint: {_keys(differ)}")
    changed = [k for k in untouched if k in before and hash_tensor(now[k]) != before[k]]
    if changed:
        raise Mismatch(f"keys missing from the checkpoint changed anyway: {_keys(changed)}")


def _flat(error: str) -> str:
    return " ".join(line.strip() for line in error.splitlines() if line.strip())


def _keys(keys: Any, shown: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:shown]) + (f" (+{len(keys) - shown})" if len(keys) > shown else "")
