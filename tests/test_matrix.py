"""The fast tier's format axis: every format × the small cases, saved and loaded in this process and
judged by every registered check (the way PyTorch's test_serialization parametrizes its format axis).

Besides the verdicts, each check is watched: one that changes the loaded object in place without
declaring ``mutates_loaded`` would hand the next check a different object, and fails here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from harness import env as envmod
from harness import expectations
from harness.checks import Check, Context, Outcome
from harness.fingerprint import fingerprint, module_modes
from harness.formats import FORMATS
from harness.records import Record
from tests.conftest import SMALL_CASES

consume_module = importlib.import_module("harness.consume")  # `harness.consume` is the public function


def _state(ctx: Context) -> Any:
    return fingerprint(ctx.fmt.contents(ctx.loaded)), module_modes(ctx.loaded)


def consume_watching(artifacts: Iterable[Any], workdir: Path,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[list[Record], dict[str, list[str]]]:
    """Consume ``artifacts`` in process: the judged records, and ``{check: [case/format/mode]}`` for every
    check that changed ``ctx.loaded`` without declaring it."""
    changed: dict[str, list[str]] = {}
    real = consume_module._run_check

    def watching(check: Check, ctx: Context) -> Outcome:
        before = _state(ctx)
        outcome = real(check, ctx)
        if not check.mutates_loaded and _state(ctx) != before:
            changed.setdefault(check.name, []).append(f"{ctx.entry['case']}/{ctx.fmt.name}/{ctx.load_mode}")
        return outcome

    known = expectations.load()
    consumer = envmod.describe("cpu")
    records = []
    with monkeypatch.context() as patch:
        patch.setattr(consume_module, "_run_check", watching)
        for artifact in artifacts:
            for record in consume_module.consume_artifact(artifact, consumer, workdir):
                record.problem = expectations.judge(record.__dict__, known)
                records.append(record)
    return records, changed


@pytest.fixture(scope="module")
def consumed(small_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """``{(case, format): (artifact, records, changed)}`` for every small artifact, consumed once."""
    out = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for artifact in consume_module.collect([small_artifacts]):
            records, changed = consume_watching([artifact], tmp_path_factory.mktemp("work"), monkeypatch)
            out[(artifact.entry["case"], artifact.entry["format"])] = (artifact, records, changed)
    return out


@pytest.mark.parametrize("fmt", FORMATS.names())
@pytest.mark.parametrize("case", SMALL_CASES)
def test_format_round_trips_in_process(consumed: dict, case: str, fmt: str) -> None:
    if FORMATS.get(fmt).unavailable():
        pytest.skip(f"{fmt}: {FORMATS.get(fmt).unavailable()}")
    if (case, fmt) not in consumed:
        pytest.skip(f"produce writes no {fmt} artifact for {case} (the format does not apply to it)")
    artifact, records, changed = consumed[(case, fmt)]
    if artifact.entry.get("status") == "skip":
        pytest.skip(f"{case} has no {fmt} artifact: {artifact.entry.get('detail')}")
    problems = [f"{r.check}[{r.load_mode}]: {r.status}: {r.detail} ({r.problem})" for r in records if r.problem]
    assert not problems, "\n".join(problems)
    assert any(r.check == "load" and (r.status == "pass" or r.expected) for r in records)
    assert any(r.check not in ("load", "produce") and r.status == "pass" for r in records), "no check passed"
    assert changed == {}, f"checks changed the loaded object without declaring mutates_loaded: {changed}"
