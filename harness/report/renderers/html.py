"""``index.html``: one self-contained page (inline CSS, images as data URIs, no network at all)."""

from __future__ import annotations

from harness.report import register
from harness.report.model import STATE_LABELS, View


def render(view: View) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.get_template("report.html.j2")
    return template.render(view=view, labels=STATE_LABELS, zip=zip)


register("html", "index.html", render)
