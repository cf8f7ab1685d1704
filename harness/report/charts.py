"""Benchmark charts for the report, from pytest-benchmark JSON files, as PNG data for data URIs.

One horizontal bar chart per benchmark group: the median of each benchmark, in milliseconds.
Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import collections
import io
import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def read_benchmarks(paths: list[Path]) -> list[dict[str, Any]]:
    """``benchmarks[]`` entries of pytest-benchmark JSON files, each tagged with its file's name."""
    found = []
    for path in paths:
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path}: not a pytest-benchmark JSON file ({exc})") from None
        if not isinstance(document, dict) or "benchmarks" not in document:
            raise HarnessError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
        for bench in document["benchmarks"]:
            found.append({**bench, "_source": Path(path).stem})
    return found


def charts(paths: list[Path]) -> list[dict[str, str]]:
    """One chart per group: ``{"title", "png_base64"}``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for bench in read_benchmarks(paths):
        groups[bench.get("group") or "benchmarks"].append(bench)
    out = []
    for group, benches in sorted(groups.items()):
        labels = [f"{b['name']} ({b['_source']})" if len(paths) > 1 else b["name"] for b in benches]
        medians = [b["stats"]["median"] * 1000 for b in benches]
        figure, axes = pyplot.subplots(figsize=(8, 0.4 * len(benches) + 1.2))
        axes.barh(labels, medians, color="#4a7fc1")
        axes.set_xlabel("median (ms)")
        axes.set_title(group)
        axes.invert_yaxis()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        pyplot.close(figure)
        out.append({"title": f"{group}: median time per benchmark",
                    "png_base64": base64.b64encode(buffer.getvalue()).decode("ascii")})
    return out
