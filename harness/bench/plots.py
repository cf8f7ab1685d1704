"""Charts of benchmark runs: throughput by format and release, with the baselines drawn.

One PNG per (payload size, direction): for each format, one bar per release and operation
variant (save / save + fsync; load / mmap load, warm or cold), on a log scale; each release's
baselines (memcpy, and raw write / raw write + fsync or raw read) are horizontal lines in that
release's colour. The HTML report embeds these files (:func:`render`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from harness.bench import results

DIRECTIONS = ("save", "load")
BASELINE_STYLES = {"memcpy": "-", "raw_write": "--", "raw_write_fsync": ":", "raw_read": "--"}


def _variant(row: dict[str, Any]) -> str:
    return row["operation"] if row["cache"] == "n/a" else f"{row['operation']} ({row['cache']})"


def _baselines_for(direction: str) -> tuple[str, ...]:
    return ("memcpy", "raw_write", "raw_write_fsync") if direction == "save" else ("memcpy", "raw_read")


def _draw_baselines(axes: Any, rows: list[dict[str, Any]], direction: str, colours: dict, right: float) -> None:
    """One labelled horizontal line per baseline and release (warm reads: the cold ones sit far below)."""
    for row in rows:
        if row["kind"] != "baseline" or row["operation"] not in _baselines_for(direction) or not row["throughput"]:
            continue
        if row["cache"] in ("n/a", "warm"):
            value, colour = row["throughput"] / 1e9, colours[row["release"]]
            axes.axhline(value, color=colour, linestyle=BASELINE_STYLES[row["operation"]], linewidth=1)
            axes.annotate(f"{row['operation']} ({row['release']})", (right, value), fontsize=7, ha="right",
                          va="bottom", color=colour)


def _chart(rows: list[dict[str, Any]], size: str, direction: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    releases = sorted({r["release"] for r in rows})
    bars = [r for r in rows if r["kind"] == "format" and r["direction"] == direction and r["throughput"]]
    formats = sorted({r["format"] for r in bars})
    series = sorted({(r["release"], _variant(r)) for r in bars})
    colours = {release: plt.cm.tab10(i) for i, release in enumerate(releases)}
    hatches = {variant: h for variant, h in zip(sorted({v for _, v in series}), ("", "//", "..", "xx", "\\\\", "++"))}
    figure, axes = plt.subplots(figsize=(min(12.0, max(6.0, 1.2 * len(formats) * max(1, len(series)) ** 0.5)), 4.5))
    width = 0.8 / max(1, len(series))
    for index, (release, variant) in enumerate(series):
        values = {r["format"]: r["throughput"] / 1e9 for r in bars if (r["release"], _variant(r)) == (release, variant)}
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(formats))]
        axes.bar(positions, [values.get(f, 0) for f in formats], width, color=colours[release],
                 hatch=hatches[variant], edgecolor="black", linewidth=0.4, label=f"torch {release}: {variant}")
    _draw_baselines(axes, rows, direction, colours, len(formats) - 0.5)
    axes.set_xticks(range(len(formats)))
    axes.set_xticklabels(formats, rotation=20, ha="right", fontsize=8)
    axes.set_yscale("log")
    axes.set_ylabel("GB/s (median" + ("; every loaded byte read)" if direction == "load" else ")"))
    axes.set_title(f"{direction} throughput, {size} payload; lines: baselines measured in the same run", fontsize=9)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    path = out / f"bench-{size}-{direction}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def render(json_paths: Iterable[Path], out_dir: Path) -> list[Path]:
    """Draw the charts of the runs in ``json_paths`` into ``out_dir``; the PNG files written."""
    rows = [row for path in json_paths for row in results.load(Path(path))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for size_bytes, size in sorted({(r["size_bytes"], r["size"]) for r in rows}):
        sized = [r for r in rows if r["size_bytes"] == size_bytes]
        for direction in DIRECTIONS:
            if any(r["kind"] == "format" and r["direction"] == direction for r in sized):
                written.append(_chart(sized, size, direction, out_dir))
    return written
