"""The regression gate: compare the medians of two benchmark runs, flag what got slower.

Two runs are matched by (format, operation, size, cache state). A format measurement is a
regression when its median time grew by more than the threshold *and* by more than the noise
the two runs themselves show: the larger of their spreads, (max − min) / median, and of their
A/A noise floors (how far the two identical interleaved series of one run differ, see
:mod:`harness.bench.interleave`), which the table shows beside every comparison. Within one run,
:func:`harness.bench.interleave.compare` judges interleaved subjects on paired ratios instead. Baselines
(memcpy, raw I/O) are compared and shown but never gate: they measure the machine, and a
baseline that slowed as much as a format says the machine, not the format, got slower.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from harness.bench.results import KEY_FIELDS, key
from harness.errors import HarnessError

#: medians of fewer rounds are compared but never gate
MIN_ROUNDS = 5

REGRESSION, FASTER, SAME, BASELINE, FEW_ROUNDS = "regression", "faster", "same", "baseline", "too few rounds"


@dataclasses.dataclass
class Comparison:
    """One matched measurement in two runs."""

    key: tuple
    old: dict[str, Any]
    new: dict[str, Any]
    change: float  # new median / old median − 1: +0.25 is 25 % slower
    noise: float  # the larger spread of the two runs, or their A/A floor when that is larger
    status: str
    #: the larger A/A noise floor of the two runs (None for runs without interleaved A/A series)
    floor: Optional[float] = None

    @property
    def fields(self) -> dict[str, Any]:
        return dict(zip(KEY_FIELDS, self.key))


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` → 0.1; anything else raises HarnessError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if not match:
        raise HarnessError(f"--threshold {text!r}: write a percentage such as 10% (or a fraction such as 0.1)")
    value = float(match.group(1))
    if match.group(2):
        return value / 100
    if value > 1:
        raise HarnessError(f"--threshold {text!r}: a bare number is a fraction; for percent write {text}%")
    return value


def spread(row: dict[str, Any]) -> float:
    """(max − min) / median of one measurement's rounds."""
    return (row["max"] - row["min"]) / row["median"] if row["median"] else float("inf")


def judge(old: dict[str, Any], new: dict[str, Any], threshold: float) -> Comparison:
    """Compare one measurement; see the module docstring for when it is a regression."""
    change = new["median"] / old["median"] - 1 if old["median"] else float("inf")
    floors = [row["aa_noise"] for row in (old, new) if row.get("aa_noise") is not None]
    floor = max(floors) if floors else None
    noise = max(spread(old), spread(new), floor or 0.0)
    return Comparison(key(old), old, new, change, noise, _verdict(old, new, change, noise, threshold), floor)


def _verdict(old: dict[str, Any], new: dict[str, Any], change: float, noise: float, threshold: float) -> str:
    if old.get("kind") == "baseline":
        return BASELINE
    if min(old["rounds"], new["rounds"]) < MIN_ROUNDS:
        return FEW_ROUNDS
    if change > threshold and change > noise:
        return REGRESSION
    if -change > threshold and -change > noise:
        return FASTER
    return SAME


def relative_to_baselines(comparisons: list[Comparison], threshold: float) -> list[Comparison]:
    """Re-judge each format measurement on its time relative to its paired baseline in the same run.

    For runs on a machine whose speed drifts between them: the change is
    (1 + change) / (1 + baseline change) − 1 and the noise is the sum of both noises. A
    measurement whose baseline is missing keeps its plain verdict.
    """
    by_key = {c.key: c for c in comparisons}
    judged = []
    for c in comparisons:
        base = by_key.get(_baseline_key(c)) if c.status != BASELINE else None
        if base is None:
            judged.append(c)
            continue
        change = (1 + c.change) / (1 + base.change) - 1
        noise = c.noise + base.noise
        judged.append(dataclasses.replace(c, change=change, noise=noise,
                                          status=_verdict(c.old, c.new, change, noise, threshold)))
    return judged


def compare(old_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]], threshold: float) -> list[Comparison]:
    """Every measurement present in both runs, judged; HarnessError when they share none."""
    new_by_key = {key(row): row for row in new_rows}
    matched = [judge(row, new_by_key[key(row)], threshold) for row in old_rows if key(row) in new_by_key]
    if not matched:
        raise HarnessError("the two runs have no benchmark in common (format, operation, size and cache state must "
                           "match): run both with the same --sizes and --format")
    if not any(c.status != BASELINE and min(c.old["rounds"], c.new["rounds"]) >= MIN_ROUNDS for c in matched):
        raise HarnessError(f"no format benchmark in common has {MIN_ROUNDS} or more rounds in both runs: "
                           f"rerun with --rounds {MIN_ROUNDS} or more")
    return matched


def regressions(comparisons: list[Comparison]) -> list[Comparison]:
    return [c for c in comparisons if c.status == REGRESSION]


def _baseline_key(comparison: Comparison) -> tuple:
    from harness.bench.results import baseline_cache

    fields, baseline = comparison.fields, comparison.old.get("baseline")
    return ("baseline", baseline, fields["size_bytes"], baseline_cache(baseline, fields["cache"]))


def baseline_change(comparisons: list[Comparison], comparison: Comparison) -> Optional[float]:
    """How much the baseline paired with ``comparison`` changed between the runs (None if not measured)."""
    wanted = _baseline_key(comparison)
    return next((other.change for other in comparisons if other.key == wanted), None)
