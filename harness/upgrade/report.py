"""One report per ``upgrade`` run: Markdown (for a PR comment) and a self-contained HTML page (for people).

Both render the structure of :mod:`harness.upgrade.answers`; the HTML is the Markdown's blocks
(headings, tables, lists, code) as HTML, so the two never say different things.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any


def _code(text: str) -> list[str]:
    return ["```python", *text.splitlines(), "```"]


def _side(answer: dict[str, Any]) -> str:
    return answer.get("headline") or answer.get("status", "?")


def markdown(report: dict[str, Any]) -> str:
    a, b = report["from"], report["to"]
    verdict = "ready" if report["ok"] else "not ready"
    lines = [f"# Upgrading torch {a} → {b}: {verdict}", "",
             f"torch {a} = `{report['torch'][a]}`, torch {b} = `{report['torch'][b]}`; project `{report['project']}`.",
             "Every fix below was run in the release it names; a fix that did not load the file is not shown.", ""]
    lines += ["## Load", "", f"| file | kind | torch {a} | torch {b} |", "|---|---|---|---|"]
    for f in report["files"]:
        kind = f"{f['structure'] or f['container']}{' (trusted)' if f['trusted'] else ''}"
        lines.append(f"| `{f['path']}` | {kind} | {_side(f['answers'][a])} | {_side(f['answers'][b])} |")
    for f in report["files"]:
        notes = []
        for release in (a, b):
            answer = f["answers"][release]
            if answer.get("error"):
                notes.append(f"- torch {release}: `{answer['error'][:400]}`")
            if answer.get("known_breaks"):
                notes.append(f"- torch {release}: known breaks {', '.join(answer['known_breaks'])} "
                             f"(harness/data/breaks.toml)")
            for fix in answer.get("fixes", []):
                head, _, code = fix.partition("\n")
                notes.append(f"- torch {release} fix: {head}")
                if code:
                    notes += _code(code)
        if notes:
            lines += ["", f"### `{f['path']}`", "", *notes]
    for section, title in (("models", "Models: Partial and Outputs"), ("trainings", "Resume")):
        if report[section]:
            lines += ["", f"## {title}"]
        for item in report[section]:
            lines += ["", f"### {item['name']}", ""]
            for release in (a, b):
                answer = item["answers"][release]
                if answer.get("status") != "ok":
                    lines.append(f"- torch {release}: **{answer.get('status')}**: {answer.get('error', '')}")
            lines += _model(item, a, b) if section == "models" else _training(item, a, b)
    return "\n".join(lines) + "\n"


def _model(item: dict[str, Any], a: str, b: str) -> list[str]:
    lines = []
    target = item["answers"][b]
    if target.get("status") == "ok":
        old = target["old_code"]
        how = f"needs this fix (ran, values equal: {old['values_equal']})" if old["needs_fix"] else "loads as is"
        lines.append(f"- Load into `{item['spec']['factory']}` (torch {b}): {how}")
        if old["needs_fix"]:
            lines += _code(old["code"])
        partial = target.get("partial")
        if partial:
            mismatched = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in partial["mismatched"].items()) or "none"
            lines += [f"- Partial into `{item['spec']['new_factory']}` (torch {b}): "
                      f"missing {len(partial['missing'])} ({', '.join(partial['missing'][:6]) or 'none'}), "
                      f"unexpected {len(partial['unexpected'])} ({', '.join(partial['unexpected'][:6]) or 'none'}), "
                      f"size-mismatched {len(partial['mismatched'])} ({mismatched}); "
                      f"this fix ran and loaded {partial['loaded']} tensors (values equal: {partial['values_equal']}):"]
            lines += _code(partial["code"])
    outputs = item["outputs"]
    differs = outputs.get("status") == "differs"
    detail = f"max abs diff {outputs['max_abs_diff']:.3g}" if differs else outputs.get("why", "")
    lines.append(f"- Outputs (forward on `{item['spec']['batch']}`, {a} vs {b}): **{outputs['status']}** {detail}")
    return lines


def _training(item: dict[str, Any], a: str, b: str) -> list[str]:
    resumed = item["resume"]
    if resumed["status"] == "not tried":
        return [f"- Resume: not tried ({resumed['why']})"]
    steps = item["answers"][b].get("steps", "?")
    differ = "" if resumed["bitexact"] else f" ({resumed['params_differing']} of {resumed['params']} parameters differ)"
    lines = [f"- Resume ({steps} steps from `{Path(item['spec']['checkpoint']).name}` in {a} and in {b}): "
             f"bit-exact **{'yes' if resumed['bitexact'] else 'no'}**{differ}; "
             f"tolerance {resumed['tolerance']:g}: {'within' if resumed['within_tolerance'] else 'exceeded'}",
             "", "| parameter group | max abs diff |", "|---|---|"]
    lines += [f"| {group} | {diff:.3g} |" for group, diff in resumed["max_abs_diff_per_group"].items()]
    streams = ", ".join(f"{k}: {v}" for k, v in resumed["rng_streams"].items())
    lines += ["", f"- RNG streams restored from the checkpoint, {a} vs {b} (a finding of its own): {streams}"]
    if not resumed["rng_same"] and not resumed["bitexact"]:
        lines.append("  - the random streams differ between the releases: dropout masks and random draws in the "
                     "resumed steps differ, so a resumed run cannot be bit-exact across them")
    for release in (a, b):
        answer = item["answers"][release]
        if answer.get("status") == "ok":
            lines.append(f"- torch {release}: losses {', '.join(f'{x:.6g}' for x in answer['losses'])}; "
                         f"checkpoint loaded by:")
            lines += _code(answer["load_code"])
    return lines


def to_html(text: str, title: str) -> str:
    """The Markdown subset written above as one self-contained page."""
    out, in_code, in_table, in_list = [], False, False, False

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)

    for line in text.splitlines():
        if line.startswith("```"):
            out.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if in_list and not line.lstrip().startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
        elif line.lstrip().startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line.lstrip()[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    out.append("</table>" if in_table else "")
    out.append("</ul>" if in_list else "")
    style = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
             "pre{background:#f5f5f5;padding:.6em;overflow-x:auto}code{font-size:.9em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    md, page = folder / "upgrade.md", folder / "upgrade.html"
    md.write_text(text, encoding="utf-8")
    page.write_text(to_html(text, f"torch {report['from']} → {report['to']}"), encoding="utf-8")
    return md, page
