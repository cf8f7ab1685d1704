"""The breaks catalog (harness/data/breaks.toml): valid, linked from expected.toml, and reproduced in real releases.

The fast tests hold the catalog's shape and its links; the slow test runs every reproducer in each release
environment present and fails when a run disagrees with an entry's range or its recorded ``verified``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import breaks, expectations
from harness.breaks import verify
from harness.errors import HarnessError
from tests._releases import need

CATALOG = breaks.load()
RELEASES = ("2.5.1", "2.13.0")


def test_every_entry_has_a_reproducer_and_at_least_15_were_reproduced() -> None:
    assert all("def shows(" in b.reproduce for b in CATALOG.values())
    reproduced = [b.id for b in CATALOG.values() if any(b.verified.values())]  # seen showing in a real release
    assert len(reproduced) >= 15, reproduced


def test_an_entry_without_a_reproducer_is_refused() -> None:
    raw = {f.name: getattr(next(iter(CATALOG.values())), f.name) for f in dataclasses.fields(breaks.Break)}
    del raw["reproduce"]
    with pytest.raises(HarnessError, match="lacks \\['reproduce'\\]"):
        breaks.parse({"break": [raw]})
    raw["reproduce"] = "print('no shows function')"
    with pytest.raises(HarnessError, match="must define shows"):
        breaks.parse({"break": [raw]})


def test_ranges_and_recorded_runs_agree() -> None:
    """Each recorded run agrees with the entry's range (the same rule the slow test applies to live runs)."""
    for entry in CATALOG.values():
        assert verify.disagreements(entry, dict(entry.verified)) == [], entry.id


def test_a_wrong_range_is_caught() -> None:
    entry = CATALOG["default-weights-only-2.6"]
    wrong = dataclasses.replace(entry, consumer=">=2.0")  # would claim 2.5.1 shows it
    assert verify.disagreements(wrong, {"2.5.1": False})
    cross = CATALOG["export-schema-major-bump"]
    assert verify.disagreements(dataclasses.replace(cross, producer=">=3.0"), {"2.5.1->2.13.0": True})


def test_expectations_take_reason_and_range_from_the_catalog() -> None:
    linked = [e for e in expectations.load() if e.break_id]
    assert len(linked) >= 10
    for e in linked:
        entry = CATALOG[e.break_id]
        assert e.reason == entry.reason() and e.consumer_torch == entry.consumer and e.producer_torch == entry.producer


@pytest.mark.parametrize("text, words", [
    ('[[expected]]\nid="x"\nbreak="no-such-break"\noutcome="error"\n', "not in harness/data/breaks.toml"),
    ('[[expected]]\nid="x"\nbreak="module-prefix"\nreason="again"\noutcome="error"\n', "come from harness/data"),
])
def test_bad_links_are_one_line_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "expected.toml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=words):
        expectations.load(path)


def test_verdicts_name_matching_breaks_only_inside_their_range() -> None:
    message = "UnpicklingError: Weights only load failed. [Unsupported global: GLOBAL argparse.Namespace]"
    ids = [b.id for b in breaks.matching("2.13.0", message)]
    assert "default-weights-only-2.6" in ids and "argparse-namespace-refused" in ids
    assert "default-weights-only-2.6" not in [b.id for b in breaks.matching("2.5.1", message)]


@pytest.fixture(scope="module")
def runs() -> dict:
    """Every reproducer in both releases: one process per release and phase."""
    return verify.reproduce_all(list(CATALOG.values()), need(*RELEASES))


@pytest.mark.slow
@pytest.mark.parametrize("ident", sorted(CATALOG))
def test_reproducer_runs_agree_with_the_catalog(runs: dict, ident: str) -> None:
    entry = CATALOG[ident]
    results = runs[ident]
    assert verify.disagreements(entry, results) == [], results
    recorded = {k: v for k, v in entry.verified.items() if all(part in RELEASES for part in k.split("->"))}
    assert {k: results.get(k) for k in recorded} == recorded, results


def bounds_not_run(entry: breaks.Break) -> list[str]:
    """Bounds of ``entry``'s ranges that are not a release its ``verified`` runs showed it in."""
    from packaging.specifiers import SpecifierSet

    wrong = []
    for side, specifier, part in (("consumer", entry.consumer, -1), ("producer", entry.producer, 0)):
        showed = {key.split("->")[part] for key, shown in entry.verified.items() if shown}
        wrong += [f"{entry.id} {side} {bound}" for bound in SpecifierSet(specifier) if bound.version not in showed]
    return wrong


def test_every_boundary_is_a_release_that_was_run() -> None:
    """A bound in a range is a release the reproducer ran in and showed in, not a version read in release notes."""
    assert [w for entry in CATALOG.values() for w in bounds_not_run(entry)] == []


def test_a_bound_from_release_notes_is_caught() -> None:
    assert bounds_not_run(dataclasses.replace(CATALOG["numpy-dtype-classes"], consumer=">=2.4")) == [
        "numpy-dtype-classes consumer >=2.4"]
    cross = CATALOG["export-schema-major-bump"]
    assert bounds_not_run(dataclasses.replace(cross, producer="<2.6")) == ["export-schema-major-bump producer <2.6"]
