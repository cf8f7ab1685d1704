"""Corrupt results as records and as tables: outcome counts per format and per mutator."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Iterable, Optional

from rich.console import Console
from rich.table import Table

from harness.corrupt import OUTCOMES, STATUS
from harness.corrupt.runner import Result

if TYPE_CHECKING:
    from harness.contracts import EnvBrief

STYLE = {"intact": "green", "clean-exception": "green", "silent-corruption": "bold red", "crash": "bold red",
         "hang": "bold red", "memory-blowup": "bold magenta", "unclassified": "bold yellow"}


def check_name(result: Result) -> str:
    """``corrupt:<mutator>/<outcome>``: both are patterns an expectation can match."""
    return f"corrupt:{result.mutator}/{result.outcome}"


def to_record(result: Result, consumer: EnvBrief, known: list) -> Any:
    """A :class:`harness.records.Record` for one result, judged against the expectations."""
    from harness import env as envmod
    from harness.expectations import judge
    from harness.records import Record

    source = result.source
    record = Record(producer=envmod.brief(source.producer), consumer=consumer, case=source.case, format=source.format,
                    check=check_name(result), load_mode=result.mode, status=STATUS[result.outcome],
                    detail=f"{result.label}: {result.detail}", duration_s=result.seconds,
                    artifact=f"{source.label} ~ {result.label}")
    record.problem = judge(record.__dict__, known)
    return record


REFUSED_CHECK = "corrupt:source/refused-globals"


def refused_record(source: Any, names: list[str], consumer: EnvBrief, known: list) -> Any:
    """A ``fail`` record for a source whose pickles name globals that are never allowed (os.system, io.open...)."""
    from harness import env as envmod
    from harness.expectations import judge
    from harness.records import Record

    record = Record(producer=envmod.brief(source.producer), consumer=consumer, case=source.case,
                    format=source.format, check=REFUSED_CHECK, load_mode="weights_only", status="fail",
                    detail=f"the file names globals outside torch's weights_only set and the vetted list, never "
                           f"allowed (a harness-written artifact names none): {', '.join(names)}",
                    duration_s=0.0, artifact=source.label)
    record.problem = judge(record.__dict__, known)
    return record


def counts_table(results: Iterable[Result], key: str, title: str) -> Table:
    """Outcome counts per ``key`` ("format" or "mutator")."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for result in results:
        counts[result.source.format if key == "format" else result.mutator][result.outcome] += 1
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    for outcome in OUTCOMES:
        table.add_column(outcome, justify="right", style=STYLE[outcome])
    table.add_column("total", justify="right")
    totals: collections.Counter = collections.Counter()
    for name, row in sorted(counts.items()):
        totals.update(row)
        table.add_row(name, *(str(row.get(o, 0)) for o in OUTCOMES), str(sum(row.values())))
    table.add_row("[b]total[/b]", *(f"[b]{totals.get(o, 0)}[/b]" for o in OUTCOMES), f"[b]{sum(totals.values())}[/b]")
    return table


def print_report(results: list[Result], records: list, seconds: float, console: Console,
                 left_out: Optional[list[str]] = None) -> None:
    """Both count tables, the classified share, the wall time and every record that fails the run."""
    console.print(counts_table(results, "format", "corrupt: outcomes per format"))
    console.print(counts_table(results, "mutator", "corrupt: outcomes per mutator"))
    classified = sum(r.outcome != "unclassified" for r in results)
    share = 100.0 * classified / len(results) if results else 0.0
    console.print(f"{len(results)} loads ({sum(r.mutator != 'baseline' for r in results)} damaged copies) in "
                  f"{seconds:.1f} s; {share:.1f} % classified", highlight=False)
    for line in left_out or []:
        console.print(f"[yellow]left out[/] {line}", highlight=False, soft_wrap=True)
    problems = [r for r in records if r.problem]
    for record in problems[:30]:
        console.print(f"[bold red]{record.problem.upper()}[/] {record.case}/{record.format} {record.check}: "
                      f"{record.detail}", highlight=False, soft_wrap=True)
    if len(problems) > 30:
        console.print(f"... and {len(problems) - 30} more in the results file")
