"""Reports people read, rendered from result records only: HTML, Markdown, JSON and JUnit XML.

:mod:`harness.report.model` builds one view-model from the records; each output kind is a
renderer module in :mod:`harness.report.renderers` that registers itself with :func:`register`
(a new kind is one more module). :func:`write` renders every kind into a folder and appends the
Markdown to ``$GITHUB_STEP_SUMMARY`` when that variable is set.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from harness.internal.registry import Registry
from harness.report.model import View


@dataclasses.dataclass(frozen=True)
class Renderer:
    """One output kind: its name, the file it writes and how it renders a view."""

    name: str
    filename: str
    render: Callable[[View], str]


RENDERERS: Registry[Renderer] = Registry("report kind", "harness.report.renderers")


def register(name: str, filename: str, render: Callable[[View], str]) -> Renderer:
    """Register an output kind; call it at import time of the renderer's module."""
    return RENDERERS.register(Renderer(name, filename, render))


def write(view: View, out: Path) -> dict[str, Path]:
    """Render every kind into ``out``; append the Markdown to ``$GITHUB_STEP_SUMMARY`` if set."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for renderer in RENDERERS:
        path = out / renderer.filename
        path.write_text(renderer.render(view), encoding="utf-8")
        written[renderer.name] = path
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and "markdown" in written:
        with open(step_summary, "a", encoding="utf-8") as stream:
            stream.write(written["markdown"].read_text(encoding="utf-8") + "\n")
    return written
