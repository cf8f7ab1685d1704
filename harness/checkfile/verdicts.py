"""Verdicts: did a file load in a release, and what concretely fixes it where it did not.

A verdict is ``ok`` when the load a user would write works: the release's plain ``torch.load``
(or, where that default is a full unpickle and ``--allow-unsafe`` was not given, the
``weights_only=True`` load), ``torch.jit.load``, ``torch.export.load`` or safetensors'
``load_file``. Fixes come from rules, one function each, registered with :func:`rule`; a rule
sees the file's inspection and the release's load results and returns a fix or None.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

from harness.inspect import BROKEN, CORRUPT, NOT_A_CHECKPOINT, OVER_LIMITS, TRUNCATED, Inspection
from harness.inspect.dangerous import danger
from harness.inspect.structure import PREFIXES

#: the loads that decide a verdict, in order (mode names of harness/checkfile/loaders.py)
PRIMARY = ("default", "weights_only", "torch.jit.load", "torch.export.load", "safetensors.load_file", "dcp.load",
           "onnxruntime", "onnx.checker", "numpy.load")


@dataclasses.dataclass
class Verdict:
    """One file in one release."""

    release: str
    status: str  # ok | fail
    #: the torch that actually ran (``2.5.1+cpu``)
    torch: str
    #: load mode → {"status": pass|fail|skip, "message", "warnings"}
    loads: dict[str, dict[str, Any]]
    fixes: list[str] = dataclasses.field(default_factory=list)
    map_location: Optional[str] = None
    needs_globals: Optional[list[str]] = None
    #: loads | loads after a fix (verified) | loads only with weights_only=False (trusted files only) |
    #: does not load | not tried (why)
    headline: str = ""
    #: the allowlist search run in this release (harness.checkfile.safeglobals.verify), where weights_only refused
    verified_fix: Optional[dict[str, Any]] = None
    #: ids of the known breaks (harness/data/breaks.toml) whose error pattern matches this release's loads
    known_breaks: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Rule = Callable[[Inspection, dict[str, Any]], Optional[str]]
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    """Register a fix rule (rules are asked in registration order)."""
    RULES.append(function)
    return function


def primary(loads: dict[str, dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The load that decides the verdict: the first of PRIMARY that ran."""
    for mode in PRIMARY:
        if mode in loads and loads[mode]["status"] != "skip":
            return loads[mode]
    return None


def judge(inspection: Inspection, release: str, result: dict[str, Any]) -> Verdict:
    """The verdict for one file from the worker's result in one release."""
    loads = result["loads"]
    decisive = primary(loads)
    ok = inspection.loadable and decisive is not None and decisive["status"] == "pass"
    verdict = Verdict(release, "ok" if ok else "fail", result.get("torch", "?"), loads,
                      map_location=result.get("map_location"), needs_globals=result.get("needs_globals"),
                      verified_fix=result.get("verified_fix"))
    verdict.headline = headline(inspection, result, ok)
    verdict.known_breaks = known_breaks(release, result)
    verdict.fixes = [fix for fix in (r(inspection, result) for r in RULES) if fix]
    return verdict


def known_breaks(release: str, result: dict[str, Any]) -> list[str]:
    """Catalog entries (harness.breaks) that a failed load's message or a load's warning matches here."""
    from harness import breaks

    texts = [r["message"] for r in result["loads"].values() if r["status"] == "fail"]
    texts += [w for r in result["loads"].values() for w in r.get("warnings", [])]
    found = {b.id: None for text in texts for b in breaks.matching(result.get("torch") or release, text)}
    return list(found)


LOADS, FIXED, UNSAFE_ONLY, FAILS = ("loads", "loads after a fix (verified)",
                                    "loads only with weights_only=False (trusted files only)", "does not load")


def headline(inspection: Inspection, result: dict[str, Any], ok: bool) -> str:
    """The one-line answer for a file in a release; "not tried (why)" when the loads that could work were skipped."""
    loads = result["loads"]
    if inspection.dangerous_globals:
        return f"dangerous: names {', '.join(inspection.dangerous_globals)} (loaded with weights_only=True only)"
    if inspection.container == OVER_LIMITS:
        return "not tried (the inspection stopped at a limit)"
    if result.get("import_error"):
        return f"not tried: {result['import_error']}"
    if ok:
        return LOADS
    if (result.get("verified_fix") or {}).get("status") == "loads":
        return FIXED
    if loads.get("unsafe", {}).get("status") == "pass":
        return UNSAFE_ONLY
    skipped = [m for m in ("default", "unsafe") if loads.get(m, {}).get("status") == "skip"]
    if inspection.loadable and skipped and not any(r["status"] == "pass" for r in loads.values()):
        return f"not tried ({loads[skipped[-1]]['message']})"
    if inspection.loadable and loads and all(r["status"] == "skip" for r in loads.values()):
        return f"not tried ({next(iter(loads.values()))['message']})"
    return FAILS


def _messages(result: dict[str, Any]) -> str:
    return " | ".join(r["message"] for r in result["loads"].values() if r["status"] == "fail")


def _failed(result: dict[str, Any], *modes: str) -> bool:
    return any(result["loads"].get(m, {}).get("status") == "fail" for m in modes)


def allowlistable(names: list[str]) -> bool:
    """True when every name may be printed in an allowlist: on a vetted harmless list and not dangerous."""
    from harness.checkfile.safeglobals import harmless

    return bool(names) and all(isinstance(n, str) and danger(n) is None and harmless(n) for n in names)


@rule
def dangerous_globals(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    """A file naming a dangerous global gets no fix at all: only the advice not to load it."""
    if inspection.dangerous_globals:
        return (f"do not load this file: it names {', '.join(inspection.dangerous_globals)}, which run code or "
                "touch the system when unpickled; it was loaded with weights_only=True only, never fully unpickled")
    return None


@rule
def over_limits(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if inspection.container == OVER_LIMITS:
        return f"not loaded: {inspection.detail} — a file this hostile or this large is not handed to torch.load"
    return None


@rule
def truncated(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    cut = re.search(r"central directory|Ran out of input|truncated|unexpected EOF|EOFError", _messages(result))
    if inspection.container == TRUNCATED or (cut and inspection.container in BROKEN):
        return "the file is truncated — re-save it (or copy it again from where it was written)"
    return None


@rule
def corrupt(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if inspection.container == CORRUPT:
        return f"the file is corrupt ({inspection.detail}) — re-save it"
    return None


@rule
def not_a_checkpoint(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if inspection.container == NOT_A_CHECKPOINT:
        return f"this is not a PyTorch checkpoint: {inspection.detail}"
    return None


@rule
def map_location(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if result.get("map_location"):
        return (f"pass map_location={result['map_location']!r}: the file holds tensors saved on "
                f"{', '.join(inspection.cuda_devices)}, which this machine does not have")
    return None


@rule
def safe_globals(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    """The allowlist the worker found and ran in this release; nothing when no allowlist made the file load.

    Never for a file naming a dangerous global, and never naming a global that is dangerous or off the
    vetted harmless lists (:mod:`harness.inspect.dangerous`, :mod:`harness.checkfile.safeglobals`).
    """
    found = result.get("verified_fix") or {}
    if found.get("status") != "loads" or inspection.dangerous_globals or not allowlistable(found.get("names") or []):
        return None
    return (f"allowlist {len(found['names'])} plain-data globals (verified: this code loaded the file in torch "
            f"{result.get('torch', '?')}):\n" + found["code"])


@rule
def not_allowlistable(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    """weights_only cannot load the file with any allowlist the harness vouches for: say what remains."""
    found = result.get("verified_fix") or {}
    if found.get("status") in (None, "loads") or inspection.dangerous_globals:
        return None
    unsafe = result["loads"].get("unsafe", {}).get("status")
    trusted = ("torch.load(..., weights_only=False) loaded it here (verified) — only for a file you trust"
               if unsafe == "pass" else "weights_only=False was not tried" if unsafe == "skip" else
               "weights_only=False failed too")
    what = (f"{found['remaining']} is not on the harness's list of plain-data globals it will allowlist"
            if found.get("remaining") else found.get("why") or f"the search stopped at: {found.get('error')}")
    return f"no safe-globals fix: {what}; {trusted}"


@rule
def importable_classes(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    missing = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'|No module named '([^']+)'",
                        _messages(result))
    if not missing:
        return None
    what = f"{missing.group(2)}.{missing.group(1)}" if missing.group(1) else missing.group(3)
    return (f"make the pickled classes importable ({what} is missing): pass --import MODULE with the module "
            f"that defines them (for a class saved from a script's __main__, the module that defines it now)")


@rule
def newer_file(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if re.search(r"maximum supported version|no item named version|schema", _messages(result), re.IGNORECASE):
        return ("the file was written by a newer torch than this release reads: load it with that release or "
                "newer, or re-save it there in an older format (state_dict, _use_new_zipfile_serialization=False)")
    return None


@rule
def strip_prefix(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    if not inspection.prefixes:
        return None
    calls = "; ".join(f"torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, {p!r})"
                      for p in inspection.prefixes)
    wrappers = ", ".join(PREFIXES[p] for p in inspection.prefixes)
    return f"strip the wrapper prefix ({wrappers}) before load_state_dict on a plain model: {calls}"


@rule
def unsafe_not_tried(inspection: Inspection, result: dict[str, Any]) -> Optional[str]:
    loads = result["loads"]
    decisive = primary(loads)
    skipped_unsafe = loads.get("unsafe", {}).get("status") == "skip"
    if (result.get("verified_fix") or {}).get("status") == "loads":
        return None  # the verified allowlist is the fix; no reason to run the file's code
    if decisive and decisive["status"] == "fail" and skipped_unsafe and inspection.loadable \
            and not inspection.dangerous_globals:
        return ("it may load with weights_only=False, which runs the file's code: rerun with --allow-unsafe if you "
                "trust it")
    return None
