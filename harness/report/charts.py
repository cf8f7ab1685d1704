"""Benchmark charts for the report, from pytest-benchmark JSON files, as PNG data for data URIs.

One horizontal bar chart per benchmark group: the median of each benchmark, in milliseconds.
Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import collections
import io
import json
import tempfile
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


def charts(paths: list[Path]) -> tuple[list[dict[str, str]], str]:
    """Charts as ``{"title", "png_base64"}`` and a note saying who drew them.

    The benchmark package's own plots (:mod:`harness.bench.plots`) are used where they exist and
    draw these files; otherwise a median-per-benchmark bar chart per group is drawn here.
    """
    read_benchmarks(paths)  # bad input is one line, whoever draws
    try:
        from harness.bench import plots
    except ImportError:
        return simple_charts(paths), "median time per benchmark (harness.bench.plots is not installed)"
    with tempfile.TemporaryDirectory(prefix="ckpt-report-") as folder:
        try:
            drawn = plots.render([Path(p) for p in paths], Path(folder))
        except Exception as exc:  # files of another shape than the bench session writes
            return simple_charts(paths), f"median time per benchmark (harness.bench.plots could not draw these: {exc})"
        images = [{"title": Path(png).stem, "png_base64": base64.b64encode(Path(png).read_bytes()).decode("ascii")}
                  for png in drawn]
    if not images:
        return simple_charts(paths), "median time per benchmark (harness.bench.plots drew nothing for these files)"
    return images, "charts drawn by harness.bench.plots"


def simple_charts(paths: list[Path]) -> list[dict[str, str]]:
    """One horizontal bar chart per group: ``{"title", "png_base64"}``."""
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
