"""``summary.md``: the grids as Markdown tables, fit for ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from harness.escaping import markdown as _escape
from harness.report import register
from harness.report.model import STATE_LABELS, View

MARKS = {"pass": "✅", "xfail": "🟦", "fail": "❌", "skip": "⏭️", "missing": "·"}
MAX_PROBLEMS = 30


def render(view: View) -> str:
    lines = ["## checkpoint-harness results", "",
             f"{sum(view.totals.values())} records from {len(view.sources)} file(s); "
             f"**{view.problems} problem(s)** (unexpected failures or unexpected passes).", "",
             "Legend: " + " · ".join(f"{MARKS[s]} {STATE_LABELS[s]}" for s in MARKS) +
             "; cells read pass/fail/error/skip, +Nx expected failures.", ""]
    for grid in view.grids:
        lines += [f"### {MARKS[grid.state]} {_escape(grid.format)}", "",
                  "| producer ↓ consumer → | " + " | ".join(_escape(c) for c in view.consumers) + " |",
                  "|---|" + "---|" * len(view.consumers)]
        for producer, cells in grid.rows:
            lines.append(f"| {_escape(producer)} | "
                         + " | ".join(f"{MARKS[c.state]} {c.summary}" for c in cells) + " |")
        lines.append("")
    lines += _weights_only(view) + _problems(view)
    return "\n".join(lines) + "\n"


def _weights_only(view: View) -> list[str]:
    panel = view.weights_only
    if not panel:
        return []
    lines = ["### weights_only: loads passed/tried (default · weights_only · unsafe)", "",
             "| format | " + " | ".join(f"{_escape(c)} (default weights_only={panel['defaults'][c]})"
                                       for c in panel["consumers"]) + " |",
             "|---|" + "---|" * len(panel["consumers"])]
    for fmt, cells in panel["rows"].items():
        lines.append(f"| {_escape(fmt)} | " + " | ".join(" · ".join(f"{p[0]}/{p[1]}" if p else "—" for p in parts)
                                                for parts in cells) + " |")
    lines += [""] + [f"- **{_escape(fmt)}** needs safe globals: {_escape(', '.join(names))}"
                     for fmt, names in panel["needs"].items()]
    return lines + [""]


def _problems(view: View) -> list[str]:
    found = [(grid.format, producer, consumer, group)
             for grid in view.grids for producer, cells in grid.rows
             for consumer, cell in zip(view.consumers, cells) for group in cell.problems]
    if not found:
        return []
    lines = ["### Problems", ""]
    for fmt, producer, consumer, g in found[:MAX_PROBLEMS]:
        lines.append(f"- **{g.outcome}** {_escape(fmt)} {_escape(producer)} → {_escape(consumer)}: "
                     f"{_escape(g.check)} \\[{_escape(g.load_mode)}\\] ({_escape(', '.join(g.cases))}): "
                     f"{_escape(g.detail)}")
    if len(found) > MAX_PROBLEMS:
        lines.append(f"- … and {len(found) - MAX_PROBLEMS} more (see the HTML report)")
    return lines + [""]


register("markdown", "summary.md", render)
