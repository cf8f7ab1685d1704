"""Backward compatibility with one torch installed: consume the committed frozen corpus.

``cases/corpus/<release>/`` holds small artifacts and manifests that real older releases wrote
through the same produce code (``nox -s "corpus(torch='2.5.1')"`` regenerates one). Every entry is
consumed here with the installed torch and judged against the expected outcomes: an unexpected
failure fails, and so does a known incompatibility that starts passing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import env as envmod
from harness import expectations
from harness.consume import Artifact, collect, consume_artifact
from harness.trust import Trust

CORPUS = Path(__file__).resolve().parents[1] / "cases" / "corpus"
RELEASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []


def corpus_artifacts() -> list[Artifact]:
    # The committed corpus is part of the harness's own source, trusted as its code is (explicitly, as --trust
    # would): its old releases' whole-model pickles are exactly what the unsafe load mode must cover.
    trusted = Trust(trust_all=True)
    return collect([CORPUS / release for release in RELEASES], trusted) if RELEASES else []


ARTIFACTS = corpus_artifacts()


def test_corpus_covers_the_promised_releases() -> None:
    assert {"1.13.1", "2.5.1", "2.6.0"} <= set(RELEASES), f"corpus releases present: {RELEASES}"
    produced_by = {a.manifest["env"]["torch"].split("+")[0] for a in ARTIFACTS}
    assert {"1.13.1", "2.5.1", "2.6.0"} <= produced_by


def test_corpus_stays_small() -> None:
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, f"the committed corpus is {total / 1e6:.1f} MB; keep it under 5 MB"


#: the fast tier keeps one case of every release × format; the other cases are cross-release work (slow)
FAST_CASE = "simple"


@pytest.mark.parametrize("artifact", [
    pytest.param(a, id=a.label, marks=() if a.entry["case"] == FAST_CASE else pytest.mark.slow) for a in ARTIFACTS])
def test_corpus_artifact_loads_as_expected(artifact: Artifact, tmp_path: Path) -> None:
    consumer = envmod.describe("cpu")
    known = expectations.load()
    problems = []
    for record in consume_artifact(artifact, consumer, tmp_path):
        as_dict = dataclasses.asdict(record)
        problem = expectations.judge(as_dict, known)
        if problem:
            problems.append(f"{record.check}[{record.load_mode}]: {problem}: {record.detail}")
    assert not problems, "\n".join(problems)
