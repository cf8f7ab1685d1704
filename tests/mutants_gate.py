"""The mutation gate run by ``nox -s mutants`` after ``mutmut run``: score and unexplained survivors.

Reads the results mutmut keeps beside each mutated file (``mutants/**/*.meta``). A mutant counts as
killed when a test failed or timed out on it. Every survivor must be listed, with a reason, in
``tests/mutants-equivalent.txt`` (``<mutant name> <why it cannot be told apart>`` per line), and the
killed share of the mutants not listed there must reach ``--min-score`` percent. Exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KILLED = {1, 3, 36, 37, 24, -24, 152, 255}  # a failing test, pytest's internal error, a timeout, the type check
NOT_RUN = {None, 34}  # not checked (a run over a subset), skipped


def results(folder: Path) -> dict[str, int | None]:
    """``{mutant name: exit code}`` over every mutated file mutmut recorded."""
    found: dict[str, int | None] = {}
    for meta in sorted(folder.rglob("*.meta")):
        found.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    return found


def merged(folders: list[Path]) -> dict[str, int | None]:
    """The results of several runs, in order: a later run's result replaces an earlier one's for the
    mutants it ran (a re-run of the survivors after new tests); a mutant it did not run keeps its earlier
    result."""
    found: dict[str, int | None] = {}
    for folder in folders:
        for name, code in results(folder).items():
            if code not in NOT_RUN or name not in found:
                found[name] = code
    return found


def explained(path: Path) -> dict[str, str]:
    """``{mutant name: reason}`` from the equivalents file; a line without a reason is an error."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        name, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"mutants_gate: error: {path}:{number}: {name} has no reason")
        found[name] = reason.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, action="append", default=None,
                        help="mutmut's folder (default mutants/); repeat it to merge runs, later ones winning")
    parser.add_argument("--equivalent", type=Path, default=Path("tests/mutants-equivalent.txt"))
    parser.add_argument("--min-score", type=float, default=90.0)
    args = parser.parse_args(argv)
    codes = {name: code for name, code in merged(args.mutants or [Path("mutants")]).items() if code not in NOT_RUN}
    if not codes:
        print("mutants_gate: error: no mutant was run (run `mutmut run` first)", file=sys.stderr)
        return 2
    equivalent = explained(args.equivalent)
    killed = sorted(n for n, c in codes.items() if c in KILLED)
    survivors = sorted(n for n, c in codes.items() if c not in KILLED)
    unexplained = [n for n in survivors if n not in equivalent]
    judged = len(codes) - len([n for n in survivors if n in equivalent])
    score = 100.0 * len(killed) / judged if judged else 100.0
    print(f"{len(codes)} mutants run: {len(killed)} killed, {len(survivors) - len(unexplained)} survived as listed "
          f"equivalent, {len(unexplained)} survived unexplained; score {score:.1f}% of {judged} "
          f"(gate {args.min_score:g}%)")
    for name in unexplained:
        print(f"  survived: {name}  (mutmut show {name})")
    return 0 if score >= args.min_score and not unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
