"""Text that came from a file or a record, made safe for where it is shown.

Anything read from a manifest, a results file or a checkpoint may be hostile: rich markup
(``[/x]`` raises, ``[default]`` vanishes), terminal control sequences (clear screen, conceal,
title changes), or Markdown/HTML (``<script>``, ``[x](javascript:...)``). Every renderer passes
such text through one of these functions; the HTML report relies on jinja2's autoescape.
"""

from __future__ import annotations

import html
import re
from typing import Any

from rich.markup import escape as _rich_escape

#: C0 controls except newline and tab, DEL, and the C1 controls (ESC starts every terminal sequence)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: characters Markdown (GitHub's flavour included) gives a meaning to in the middle of a line (``<``,
#: ``>`` and ``&`` are HTML-escaped first; ``#``, ``-``, ``+`` only matter at a line start, never ours)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def strip_controls(text: Any) -> str:
    """``text`` without terminal control characters (newlines and tabs are kept)."""
    return _CONTROLS.sub("", str(text))


def terminal(text: Any) -> str:
    """Text for a rich console: control characters removed, markup escaped (shown literally)."""
    return _rich_escape(strip_controls(text))


def markdown(text: Any) -> str:
    """Inline Markdown that shows ``text`` literally: no HTML, links, emphasis or table breaks."""
    flat = strip_controls(text).replace("\n", " ").replace("\t", " ")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=True))
