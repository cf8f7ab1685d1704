"""Round-trip a user's own model through every format, in this process, with the harness's checks.

:func:`roundtrip_model` wraps the model and its inputs in a :class:`harness.case.Case` registered only
for the call, saves it in every applicable format under ``workdir`` (:func:`harness.produce.produce`),
loads each artifact back in every load mode and runs every check (:func:`harness.consume.consume`).
The :class:`RoundTrip` it returns holds the result records; :meth:`RoundTrip.assert_ok` raises with
one line per unexpected failure. The pytest plugin (:mod:`harness.pytest_plugin`) wraps this as the
``ckpt_roundtrip`` fixture.

The model is deep-copied and trained for two optimizer steps on ``inputs`` (so optimizer state is never
empty); the caller's model is not changed. A whole-model pickle needs the model's class at module level
of an importable module; where it is not, that format's ``produce`` record says why.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from harness.case import CASES, Case
from harness.expectations import Expectation
from harness.records import Record

Inputs = Union[tuple, Mapping[str, tuple]]


@dataclasses.dataclass
class RoundTrip:
    """The records of one round trip, with what a test wants to know about them."""

    case: str
    records: list[Record]

    @property
    def problems(self) -> list[Record]:
        """Records that fail the run: an unexpected fail or error, or an expected failure that passed."""
        return [r for r in self.records if r.problem]

    @property
    def ok(self) -> bool:
        return bool(self.records) and not self.problems

    def formats(self) -> list[str]:
        """The formats that were saved and loaded, in order."""
        return list(dict.fromkeys(r.format for r in self.records))

    def statuses(self) -> dict[tuple[str, str, str], str]:
        """``{(format, check, load_mode): status}``."""
        return {(r.format, r.check, r.load_mode): r.status for r in self.records}

    def report(self) -> str:
        """One line per problem: ``format / check [load mode]: status — detail (why it fails the run)``."""
        if not self.records:
            return f"{self.case}: no records (no format applies?)"
        lines = [f"{r.format} / {r.check} [{r.load_mode}]: {r.status} — {r.detail} ({r.problem})"
                 for r in self.problems]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` listing every failed check, or saying that nothing ran."""
        if not self.records:
            raise AssertionError(self.report())
        if self.problems:
            raise AssertionError(f"{len(self.problems)} checkpoint check(s) failed for {self.case}:\n{self.report()}")


def case_name(model: Union[nn.Module, Mapping[str, nn.Module]]) -> str:
    """A file-name-safe case name from the model's class: ``MyNet`` → ``user_mynet``."""
    first = model if isinstance(model, nn.Module) else next(iter(model.values()))
    return "user_" + re.sub(r"[^a-z0-9_]+", "_", type(first).__name__.lower())


def make_case(model: Union[nn.Module, Mapping[str, nn.Module]], inputs: Inputs, name: Optional[str] = None,
              **options: Any) -> Case:
    """A :class:`Case` whose ``build`` returns a copy of ``model`` and whose inputs are ``inputs``.

    ``model`` is one module (``inputs`` its positional inputs) or ``{name: module}`` (``inputs``
    ``{name: tuple}``). ``options`` go to :class:`Case` (``optimizer``, ``atol``, ``save_mode``, ``seed``...).
    """
    if isinstance(model, nn.Module):
        names: tuple[str, ...] = ("model",)
        if not isinstance(inputs, tuple):
            raise TypeError("inputs must be a tuple of the model's positional inputs")
    else:
        names = tuple(model)
        if not isinstance(inputs, Mapping) or set(inputs) != set(names):
            raise TypeError(f"inputs must be a dict with one tuple per model: {list(names)}")
    chosen = name or case_name(model)
    models = model if isinstance(model, nn.Module) else dict(model)
    fixed = inputs if isinstance(inputs, tuple) else dict(inputs)
    return Case(name=chosen, exercises=f"a user model ({chosen}) round-tripped in process",
                build=lambda: models, inputs=lambda: fixed, models=names, corpus=False, **options)


def roundtrip_model(model: Union[nn.Module, Mapping[str, nn.Module]], inputs: Inputs, workdir: Path,
                    formats: Optional[Iterable[str]] = None, *, name: Optional[str] = None, device: str = "cpu",
                    expectations: Optional[list[Expectation]] = None, **case_options: Any) -> RoundTrip:
    """Save ``model`` in every format (or those named), load each back here and run every check.

    Artifacts go under ``workdir/artifacts``. ``expectations`` default to the packaged known
    incompatibilities (a whole model refused by ``weights_only=True`` is expected, not a failure).
    """
    from harness.consume import consume
    from harness.produce import produce
    from harness.records import RecordWriter

    case = make_case(model, inputs, name, **case_options)
    out = Path(workdir) / "artifacts"
    try:
        with CASES.temporarily(case):
            produce(out, [case.name], list(formats) if formats else None, device, replace=True)
            with RecordWriter(None) as writer:
                records = consume([out], writer, device, expectations=expectations)
    finally:
        forget_templates(case)
    return RoundTrip(case.name, records)


def forget_templates(case: Case) -> None:
    """Drop the copy of the user's model that :meth:`Case.fresh_models` keeps for later copies."""
    case.forget_template()
