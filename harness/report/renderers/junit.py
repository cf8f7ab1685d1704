"""``junit.xml``: one test suite per format, one test case per artifact and producer → consumer pair.

A full matrix has ~20,000 records; one test case each made a 5 MB file that CI test tabs render
slowly, so a case stands for every check of one artifact in one pair (``name`` the case,
``classname`` ``format.producer -> consumer``, ``assertions`` the checks that passed):

- a ``failure`` when any record is an unexpected failure or an unexpected pass (an expectation that
  stopped holding), else an ``error`` when any is an unexpected error; its text has one line per
  such record (``check[load mode]: detail (problem)``), its message the first of them;
- ``skipped`` when nothing passed (every check skipped, or failed as expected), with the reasons,
  as pytest writes xfail;
- expected failures beside passes are listed in ``system-out`` (``check[load mode]: reason``).
"""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET

from harness.escaping import strip_controls as _text
from harness.report import register
from harness.report.model import View

#: longest message attribute and text line kept (details are one line already)
MESSAGE_CHARS = 500


def render(view: View) -> str:
    root = ET.Element("testsuites", name="checkpoint-harness")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for fmt, records in _by_format(view):
        suite = ET.SubElement(root, "testsuite", name=_text(fmt))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for (pair, case), group in _by_artifact(records).items():
            counts["tests"] += 1
            kind = _testcase(suite, fmt, pair, case, group)
            if kind:
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(suite: ET.Element, fmt: str, pair: str, case: str, records: list[dict]) -> str:
    """Add the test case of one artifact in one pair; return its kind (failure, error, skipped or "")."""
    passed = sum(r.get("count") or 1 for r in records if r["outcome"] == "pass")
    element = ET.SubElement(suite, "testcase", classname=_text(f"{fmt}.{pair}"), name=_text(case),
                            assertions=str(passed))
    by_kind: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        by_kind[_kind(r)].append(r)
    wrong = by_kind["failure"] + by_kind["error"]
    if wrong:
        kind = "failure" if by_kind["failure"] else "error"
        lines = [_line(r, " ".join(filter(None, [r["detail"], f"({r['problem']})"]))) for r in wrong]
        child = ET.SubElement(element, kind, message=f"{len(lines)} of {len(records)}: {lines[0]}"[:MESSAGE_CHARS])
        child.text = "\n".join(lines)
        return kind
    expected = [_line(r, r["message"] or r["detail"]) for r in by_kind["xfail"]]
    if not passed:
        reasons = list(dict.fromkeys(expected + [_text(r["detail"]) for r in by_kind["skipped"]]))
        child = ET.SubElement(element, "skipped", message=(reasons[0] if reasons else "")[:MESSAGE_CHARS])
        child.text = "\n".join(reasons)
        return "skipped"
    if expected:
        ET.SubElement(element, "system-out").text = "expected failures:\n" + "\n".join(expected)
    return ""


def _line(r: dict, text: str) -> str:
    """``check[load mode]: text``, without control characters (a record's text may come from a hostile file)."""
    return _text(f"{r['check']}[{r['load_mode']}]: {text}")[:MESSAGE_CHARS]


def _kind(r: dict) -> str:
    if r["outcome"] == "xpass" or (r["problem"] and r["outcome"] == "fail"):
        return "failure"
    if r["problem"] and r["outcome"] == "error":
        return "error"
    if r["outcome"] == "xfail":
        return "xfail"
    if r["outcome"] == "skip":
        return "skipped"
    return ""


def _by_artifact(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    grouped: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for r in records:
        grouped[(f"{r['producer']} -> {r['consumer']}", r["case"])].append(r)
    return dict(sorted(grouped.items()))


def _by_format(view: View) -> list[tuple[str, list[dict]]]:
    return [(fmt, records) for fmt, records in sorted(view.records_by_format().items())]


register("junit", "junit.xml", render)
