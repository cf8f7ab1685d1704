"""``junit.xml``: one test suite per format, one test case per record (CI test tabs read it).

An expected failure is a skipped case whose message is the expectation's reason (as pytest
writes xfail); an unexpected failure or error is a ``failure``/``error``; an unexpected pass
is a ``failure`` saying which expectation stopped holding.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.escaping import strip_controls as _text
from harness.report import register
from harness.report.model import View


def render(view: View) -> str:
    root = ET.Element("testsuites", name="checkpoint-harness")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite_records in _by_format(view):
        fmt, records = suite_records
        suite = ET.SubElement(root, "testsuite", name=_text(fmt))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for r in records:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=_text(f"{fmt}.{r['producer']} -> {r['consumer']}"),
                                 name=_text(f"{r['case']}/{r['check']}[{r['load_mode']}]"))
            kind = _kind(r)
            if kind:
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
                element = ET.SubElement(case, kind, message=_text(r["message"] or "")[:500])
                element.text = _text(r["detail"])
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _kind(r: dict) -> str:
    if r["outcome"] == "xpass" or (r["problem"] and r["outcome"] == "fail"):
        return "failure"
    if r["problem"] and r["outcome"] == "error":
        return "error"
    if r["outcome"] in ("skip", "xfail"):
        return "skipped"
    return ""


def _by_format(view: View) -> list[tuple[str, list[dict]]]:
    return [(fmt, records) for fmt, records in sorted(view.records_by_format().items())]


register("junit", "junit.xml", render)
