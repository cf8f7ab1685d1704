"""``summary.json``: the whole view-model as JSON, for dashboards and other tools."""

from __future__ import annotations

import dataclasses
import json

from harness.report import register
from harness.report.model import View


def render(view: View) -> str:
    # images belong in the HTML page; every record is in the results files and junit.xml
    document = dataclasses.asdict(dataclasses.replace(view, charts=[], results=[]))
    document.pop("charts")
    document.pop("results")
    for grid, raw in zip(view.grids, document["grids"]):
        raw["state"] = grid.state
        raw["rows"] = [{"producer": producer, "cells": {consumer: {**dataclasses.asdict(cell), "summary": cell.summary}
                                                         for consumer, cell in zip(view.consumers, cells)}}
                       for producer, cells in grid.rows]
    return json.dumps(document, indent=1, sort_keys=True, default=str) + "\n"


register("json", "summary.json", render)
