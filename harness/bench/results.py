"""Benchmark results: pytest-benchmark JSON in, plain rows out, each throughput beside its baseline.

Every benchmark row of ``ckpt-harness bench`` carries its identity in ``extra_info`` (format,
operation, size, cache state, bytes moved). :func:`annotate` adds, from the medians of the same
run: throughput, spread ((max − min) / median), the paired baseline's throughput and the
fraction of it reached, and the fraction of memcpy. :func:`load` returns plain dict rows for
tables, comparisons, plots and reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from harness.errors import HarnessError

#: what identifies one measurement across runs and releases
KEY_FIELDS = ("format", "operation", "size_bytes", "cache")


def key(row: dict[str, Any]) -> tuple:
    """The identity of a measurement: (format, operation, size in bytes, cache state)."""
    return tuple(row.get(field) for field in KEY_FIELDS)


def baseline_cache(baseline: str, cache: str) -> str:
    """The cache state of the baseline a measurement in ``cache`` is paired with (writes have none)."""
    from harness.bench.operations import NO_CACHE, OPERATIONS

    return cache if cache in OPERATIONS[baseline].caches else NO_CACHE


def annotate(benchmarks: Iterable[dict[str, Any]]) -> None:
    """Add throughput, spread and baseline fractions to each benchmark's ``extra_info``, in place."""
    benchmarks = [b for b in benchmarks if "operation" in b.get("extra_info", {})]
    medians: dict[tuple, float] = {}
    for bench in benchmarks:
        info, stats = bench["extra_info"], bench["stats"]
        info["spread"] = (stats["max"] - stats["min"]) / stats["median"] if stats["median"] else None
        info["throughput"] = info["bytes"] / stats["median"] if stats["median"] else None
        medians[(info["operation"], info["size_bytes"], info["cache"])] = info["throughput"]
    for bench in benchmarks:
        info = bench["extra_info"]
        baseline = medians.get((info["baseline"], info["size_bytes"], baseline_cache(info["baseline"], info["cache"])))
        memcpy = medians.get(("memcpy", info["size_bytes"], "n/a"))
        info["baseline_throughput"] = baseline
        info["fraction_of_baseline"] = _ratio(info["throughput"], baseline)
        info["fraction_of_memcpy"] = _ratio(info["throughput"], memcpy)


def _ratio(value: Any, reference: Any) -> Any:
    return value / reference if value and reference else None


def read_json(path: Path) -> dict[str, Any]:
    """A pytest-benchmark JSON document; bad input raises HarnessError saying what is wrong."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path} does not exist: pass a JSON file written by ckpt-harness bench --json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path} is not readable JSON ({exc}): pass a file written by ckpt-harness bench --json"
                           ) from None
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list) \
            or "machine_info" not in document:
        raise HarnessError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' and 'machine_info'): "
                           "pass a file written by ckpt-harness bench --json")
    _validate(document, path)
    return document


def _validate(document: dict[str, Any], path: Path) -> None:
    """Type-check what the tables, comparisons and plots read (pydantic); one line naming the field."""
    from pydantic import ValidationError

    from harness.contracts import describe_error

    try:
        _DOCUMENT.validate_python(document)
        for number, bench in enumerate(document["benchmarks"]):
            if "operation" in bench["extra_info"]:
                try:
                    _HARNESS_INFO.validate_python(bench["extra_info"])
                except ValidationError as exc:
                    raise HarnessError(f"{path}: benchmarks.{number}.extra_info: {describe_error(exc)}") from None
    except ValidationError as exc:
        raise HarnessError(f"{path}: not ckpt-harness bench JSON: {describe_error(exc)}") from None


def _adapters() -> tuple[Any, Any]:
    from pydantic import BaseModel, ConfigDict, NonNegativeFloat, NonNegativeInt, TypeAdapter, field_validator

    class _Loose(BaseModel):
        model_config = ConfigDict(extra="allow")

    class Stats(_Loose):
        median: NonNegativeFloat
        min: NonNegativeFloat
        max: NonNegativeFloat
        mean: NonNegativeFloat
        rounds: NonNegativeInt

    class Benchmark(_Loose):
        name: str
        stats: Stats
        extra_info: dict[str, Any] = {}

    class Document(_Loose):
        machine_info: dict[str, Any]
        benchmarks: list[Benchmark]

    class HarnessInfo(_Loose):
        operation: str
        format: str
        size: str
        size_bytes: NonNegativeInt
        cache: str
        bytes: NonNegativeInt
        baseline: str
        kind: str
        direction: str

        @field_validator("operation", "baseline")
        @classmethod
        def _known(cls, value: str) -> str:
            from harness.bench.operations import OPERATIONS

            if value not in OPERATIONS:
                raise ValueError(f"unknown operation {value!r}")
            return value

    return TypeAdapter(Document), TypeAdapter(HarnessInfo)


_DOCUMENT, _HARNESS_INFO = _adapters()


def rows(document: dict[str, Any], source: str = "") -> list[dict[str, Any]]:
    """Plain rows of the harness benchmarks in a pytest-benchmark document (others are ignored)."""
    benchmarks = [b for b in document["benchmarks"] if "operation" in b.get("extra_info", {})]
    if benchmarks and "fraction_of_memcpy" not in benchmarks[0]["extra_info"]:
        annotate(benchmarks)
    machine = document["machine_info"]
    out = []
    for bench in benchmarks:
        stats = bench["stats"]
        out.append({
            **bench["extra_info"],
            "name": bench["name"],
            "release": machine.get("torch"),
            "python": machine.get("python"),
            "device": machine.get("device"),
            "rounds": stats["rounds"],
            "median": stats["median"],
            "min": stats["min"],
            "max": stats["max"],
            "mean": stats["mean"],
            "iqr": stats.get("iqr"),
            "data": stats.get("data"),
            "source": source,
        })
    return out


def load(path: Path) -> list[dict[str, Any]]:
    """Rows of one ``ckpt-harness bench --json`` file (see :func:`rows` for the fields)."""
    return rows(read_json(path), str(path))
