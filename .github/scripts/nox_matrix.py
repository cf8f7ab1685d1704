"""Turn ``nox -l --json`` into a GitHub Actions matrix for one family of sessions.

    nox -l --json -t nightly | python .github/scripts/nox_matrix.py produce

prints, on one line, ``{"include": [{"session", "python", "torch", "device", "slug"}, ...]}``: one entry per
listed session named ``produce`` (or ``consume``). ``session`` is the exact name for ``nox -s``; ``slug`` is
the same name made safe for artifact names (letters, digits, ``.``, ``-`` only), e.g.
``produce(torch='2.5.1', device='cpu')`` → ``produce-torch-2.5.1-device-cpu``.

Exits 1 with a message on stderr when the input is not nox's JSON list, when no session of that name is
listed (GitHub Actions rejects an empty matrix, and a nightly without producers or consumers is a broken
noxfile or tag), or when two sessions would share a slug (their artifacts would overwrite each other).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

FAMILIES = ("produce", "consume")
NOX_PYTHON = "3.11"  # what a session without its own python runs with: the interpreter nox itself runs on


def slug(session: str) -> str:
    """``produce(torch='2.5.1', device='cpu')`` → ``produce-torch-2.5.1-device-cpu``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", session).strip("-")


def entries(sessions: list[dict[str, Any]], family: str) -> list[dict[str, str]]:
    """One matrix entry per session of ``family`` in ``nox -l --json`` output, in nox's order."""
    chosen = []
    for item in sessions:
        if item.get("name") != family:
            continue
        spec = item.get("call_spec") or {}
        missing = [key for key in ("torch", "device") if key not in spec]
        if missing:
            raise ValueError(f"session {item.get('session')!r} has no {missing} in its call_spec; "
                             f"expected @nox.parametrize('python,torch,device', ...)")
        python = item.get("python") or NOX_PYTHON
        if not isinstance(python, str):
            raise ValueError(f"session {item['session']!r}: python must be one version string, got {python!r}")
        chosen.append({"session": item["session"], "python": python, "torch": str(spec["torch"]),
                       "device": str(spec["device"]), "slug": slug(item["session"])})
    seen: dict[str, str] = {}
    for entry in chosen:
        if entry["slug"] in seen:
            raise ValueError(f"sessions {seen[entry['slug']]!r} and {entry['session']!r} share the slug "
                             f"{entry['slug']!r}: their artifacts would overwrite each other")
        seen[entry["slug"]] = entry["session"]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=FAMILIES, help="which sessions to put in the matrix")
    args = parser.parse_args(argv)
    try:
        sessions = json.load(sys.stdin)
        if not isinstance(sessions, list) or not all(isinstance(item, dict) for item in sessions):
            raise ValueError("expected the JSON list of objects that `nox -l --json` prints")
        matrix = entries(sessions, args.family)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"nox_matrix.py: {exc}", file=sys.stderr)
        return 1
    if not matrix:
        listed = sorted({str(item.get("name")) for item in sessions})
        print(f"nox_matrix.py: no {args.family!r} session in the nox listing (sessions listed: {listed}); "
              f"check the tag passed to `nox -l --json -t`", file=sys.stderr)
        return 1
    print(json.dumps({"include": matrix}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
