"""Run damaged copies of real artifacts through their loaders, each load in its own process.

Plan: one unmutated control per source (the *baseline*), then ``count`` damaged copies spread
round-robin over the (source, mutator) pairs in a seeded order; copy ``i`` is derived with
``random.Random(f"{seed}:{i}")``, so a plan is reproducible. Run: copies are written to a private
temporary folder and loaded side by side by ``workers`` threads, each starting a process forked
from a fork server that has torch imported (``harness.corrupt._worker``): a load costs a fork, not
a torch import. Each process has an address-space limit; one that outlives ``timeout`` is killed.
``concurrent.futures`` process pools are not used for the loads themselves because a child dying
by a signal breaks the whole pool.

Pickled formats are loaded with ``weights_only=True`` (inside :class:`harness.compat.RefuseFullUnpickle`,
so no loader falls back to a full unpickle): torch's own safe set, plus, for a trusted source only,
the globals its undamaged file needs that are on the vetted list (:mod:`harness.corrupt.vetted`). A
global outside both is never allowed; a source naming one is reported (a ``fail`` record).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from harness.corrupt import MUTATORS, STARTED_MARKER, Mutation, Mutator, Source, vetted
from harness.corrupt.layout import describe, pickle_globals

#: damaged copies per profile
PROFILES = {"ci": 300, "nightly": 5000}
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MEMORY_MB = 1024
#: sources larger than this are left out (each damaged copy is written to disk)
DEFAULT_MAX_SOURCE_BYTES = 8 * 1024 * 1024
BASELINE = "baseline"


@dataclasses.dataclass
class Result:
    """The classified outcome of loading one damaged copy (or a source's unmutated control)."""

    source: Source
    mutator: str
    label: str
    mode: str
    outcome: str
    detail: str
    seconds: float


def load_sources(manifests: Iterable[dict[str, Any]], max_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
                 formats: Optional[set[str]] = None, trust: Any = None) -> tuple[list[Source], list[str]]:
    """Sources from read manifests (files are read, never written), and why others were left out.
    ``trust`` (a :class:`harness.trust.Trust`) marks sealed or vouched-for sources; none is trusted without it."""
    from harness.formats import FORMATS
    from harness.manifest import artifact_path

    sources, left_out = [], []
    for manifest in manifests:
        root = Path(manifest["_root"])
        for entry in manifest["entries"]:
            if entry.get("status") != "ok" or (formats and entry["format"] not in formats):
                continue
            path = artifact_path(manifest, entry)  # inside the manifest's folder, or a one-line error
            if entry["format"] not in FORMATS.names():
                left_out.append(f"{path}: format {entry['format']!r} is unknown to this harness")
            elif path.is_dir():
                left_out.append(f"{path}: a folder artifact; corrupt damages single-file containers only")
            elif entry["file_bytes"] > max_bytes:
                left_out.append(f"{path}: {entry['file_bytes']} bytes, over --max-bytes {max_bytes}")
            else:
                data = path.read_bytes()
                trusted = bool(trust and trust.trusted(root, path))
                sources.append(Source(path, entry["format"], entry["case"], manifest["env_id"], manifest["env"],
                                      entry, data, describe(data), trusted))
    return sources, left_out


@dataclasses.dataclass(frozen=True)
class Planned:
    """One load to run: a source and either no mutation (the baseline) or a mutator and its index."""

    index: int
    source: Source
    mutator: Optional[Mutator]
    occurrence: int = 0


def plan(sources: list[Source], count: int, seed: int = 0) -> list[Planned]:
    """Baselines for every source, then ``count`` damaged copies round-robin over (source, mutator)."""
    planned = [Planned(-1 - i, source, None) for i, source in enumerate(sources)]
    pairs = [(s, m) for s in sources for m in MUTATORS if m.applies(s)]
    if not pairs:
        return planned
    random.Random(seed).shuffle(pairs)  # a short run still spreads over formats and mutators
    for index in range(count):
        source, mutator = pairs[index % len(pairs)]
        planned.append(Planned(index, source, mutator, index // len(pairs)))
    return planned


def mutation_for(item: Planned, seed: int) -> Mutation:
    """The bytes to load for ``item`` (deterministic in ``seed`` and ``item.index``)."""
    if item.mutator is None:
        return Mutation(BASELINE, f"{BASELINE}:unmutated@0", item.source.data)
    rng = random.Random(f"{seed}:{item.index}")
    for attempt in range(8):
        mutation = item.mutator.mutate(item.source, rng, item.occurrence + attempt)
        if mutation is not None:
            return mutation
    data = item.source.data
    half = len(data) // 2
    return Mutation(item.mutator.name, f"{item.mutator.name}:fallback-truncate@{half}", data[:half])


def vetted_and_refused(source: Source) -> tuple[list[str], list[str]]:
    """The globals the source's pickles name beyond torch's own weights_only set: ``(vetted, refused)``.
    Read from the opcodes, never unpickled; refused ones are never allowed, whoever wrote the file. Only for
    ``torch.load`` pickles: a TorchScript archive's pickles name TorchScript classes and go through its own loader."""
    from harness import compat
    from harness.formats import FORMATS

    if source.layout is None or not source.layout.pickles or not FORMATS.get(source.format).pickled:
        return [], []

    return vetted.split(pickle_globals(source.data, source.layout), compat.weights_only_allowlist())


def load_mode(fmt: Any) -> str:
    return "weights_only" if fmt.pickled else "default"


class Runner:
    """Loads damaged copies in forked processes, ``workers`` at a time."""

    def __init__(self, workdir: Path, seed: int = 0, workers: int = 2, timeout: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB, plugins: Iterable[str] = ()) -> None:
        self.workdir, self.seed, self.workers, self.plugins = workdir, seed, workers, list(plugins)
        self.timeout, self.memory_bytes = timeout, memory_mb * 1024 * 1024
        methods = multiprocessing.get_all_start_methods()
        get = multiprocessing.get_context
        self.context: multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext = (
            get("forkserver") if "forkserver" in methods else get("spawn"))
        if self.context.get_start_method() == "forkserver":
            # Both preloaded: a child never imports harness code from disk (edits mid-run cannot reach it).
            self.context.set_forkserver_preload(["harness.corrupt._worker", "harness.corrupt.runner"])

    def run(self, items: list[Planned]) -> Iterator[Result]:
        """Results as loads finish (not in plan order)."""
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = set()
            queue = iter(items)
            for item in queue:
                pending.add(pool.submit(self.run_one, item))
                if len(pending) >= self.workers * 2:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            for future in concurrent.futures.as_completed(pending):
                yield future.result()

    def allowed(self, source: Source) -> list[str]:
        """Globals beyond torch's own set that loads of ``source`` allow: vetted ones, for a trusted source."""
        return vetted_and_refused(source)[0] if source.trusted else []

    def run_one(self, item: Planned) -> Result:
        from harness.formats import FORMATS

        mutation = mutation_for(item, self.seed)
        fmt = FORMATS.get(item.source.format)
        folder = Path(tempfile.mkdtemp(prefix=f"load-{item.index}-", dir=self.workdir))
        try:
            path = folder / item.source.path.name
            path.write_bytes(mutation.data)
            job = {"folder": str(folder), "path": str(path), "result": str(folder / "result.json"),
                   "format": fmt.name, "case": item.source.case, "mode": load_mode(fmt),
                   "allow": self.allowed(item.source) if fmt.pickled else [],
                   "expected": item.source.entry["fingerprint"], "memory_bytes": self.memory_bytes,
                   "plugins": self.plugins}
            started = time.perf_counter()
            outcome, detail = self._load(job, folder)
            return Result(item.source, mutation.mutator, mutation.label, job["mode"], outcome, detail,
                          round(time.perf_counter() - started, 4))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _load(self, job: dict[str, Any], folder: Path) -> tuple[str, str]:
        from harness.corrupt import _worker  # noqa: F401  (spawn fallback: importable target)

        process = self.context.Process(target=_target, args=(job,), daemon=True)
        process.start()
        process.join(self.timeout)
        killed = process.is_alive()
        if killed:
            process.kill()
            process.join()
        return classify(process.exitcode, killed, folder / "result.json", folder / "output.txt", self.timeout,
                        started=(folder / STARTED_MARKER).exists())


def _target(job: dict[str, Any]) -> None:
    from harness.corrupt._worker import run_job

    run_job(job)


def classify(exitcode: Optional[int], killed: bool, result: Path, output: Path, timeout: float,
             started: bool = True) -> tuple[str, str]:
    """The outcome of one load process, from how it ended and what it wrote.

    ``started`` says the process reached the load (it writes a marker first): a process that ended
    before that failed in the harness's own start-up, which is ``unclassified``, never a finding.
    """
    tail = _tail(output)
    if not started and not killed:
        return "unclassified", f"the load process ended (status {exitcode}) before it started loading"
    if killed:
        return "hang", f"no result within {timeout:g} s; killed"
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        if "bad_alloc" in tail or "can't allocate" in tail or name == "SIGKILL":
            return "memory-blowup", f"killed by {name} at the memory limit: {tail}"
        return "crash", f"killed by {name}: {tail}"
    if result.is_file():
        try:
            report = json.loads(result.read_text())
            return report["outcome"], report["detail"]
        except (ValueError, KeyError):
            return "unclassified", f"unreadable result: {result.read_text()[:200]}"
    if exitcode:
        return "crash", f"exited with status {exitcode} without a result: {tail}"
    return "unclassified", f"exited with status {exitcode} without a result: {tail}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
