"""Consume: load every artifact any environment produced and run every applicable check.

First every manifest is read and every artifact's hash verified (bad input stops the run with
one line before anything is loaded). Then each artifact is loaded in each of its format's load
modes; a load that raises is a record, never a crash. Nothing under the artifact folders is
written: second round trips go to a private temporary folder.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, cast

from harness import compat, consume_pool
from harness import env as envmod
from harness import expectations as expectations_module
from harness import trust as trustmod
from harness.case import CASES, Case
from harness.checks import CHECKS, Check, Context, Outcome
from harness.expectations import Expectation
from harness.formats import FORMATS, Format, LoadRequest
from harness.manifest import artifact_path, entries, find_manifests, outputs_path, read, verify_artifact
from harness.records import Record, RecordWriter, Status, describe_exception, one_line

Progress = Callable[[str], None]


@dataclasses.dataclass
class Artifact:
    """One manifest entry with its manifest, ready to consume."""

    manifest: dict[str, Any]
    entry: dict[str, Any]
    #: may reach a full unpickle: sealed by this user's produce, or the user passed --trust (harness.trust)
    trusted: bool = False

    @property
    def label(self) -> str:
        return f"{self.manifest['env_id']}/{self.entry['case']}/{self.entry['format']}"


def collect(roots: Iterable[Path], trust: Optional[trustmod.Trust] = None, threads: int = 1) -> list[Artifact]:
    """Read and validate every manifest under ``roots``; verify every listed artifact's hash and that every
    path it names stays inside its folder; mark each artifact trusted or not (``trust``: seals only when None).

    ``threads`` artifacts are hashed at a time (the hashes release the GIL); the first bad entry in manifest
    order is the error raised, whatever the thread count."""
    trust = trust or trustmod.Trust()
    found: list[Artifact] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for path in find_manifests([Path(r) for r in roots]):
            document = read(path)
            listed = list(entries(document))
            found.extend(pool.map(_checked, [document] * len(listed), listed, [path.parent] * len(listed),
                                  [trust] * len(listed)))
    return found


def _checked(document: dict[str, Any], entry: dict[str, Any], folder: Path, trust: trustmod.Trust) -> Artifact:
    """One manifest entry as an Artifact, its file verified against the manifest (a HarnessError if not)."""
    trusted = False
    if entry.get("status") == "ok":
        verify_artifact(document, entry)
        if isinstance(document["cases"].get(entry.get("case")), dict) and \
                "outputs_file" in document["cases"][entry["case"]]:
            outputs_path(document, entry["case"])
        trusted = trust.trusted(folder, artifact_path(document, entry))
    return Artifact(document, entry, trusted)


def consume(roots: Iterable[Path], writer: RecordWriter, device: str = "cpu",
            progress: Optional[Progress] = None,
            expectations: Optional[list[Expectation]] = None, jobs: int = 1,
            plugins: Sequence[str] = (), trust_all: bool = False) -> list[Record]:
    """Consume every artifact under ``roots`` on ``device``; records go to ``writer``.

    Each record is judged against ``expectations`` (the packaged file when None): known
    incompatibilities are marked ``expected`` instead of counting as failures. With ``jobs`` > 1
    the artifacts are consumed by that many worker processes (:mod:`harness.consume_pool`), which
    import the ``plugins`` modules again; the records are the same, written in the same order.
    Artifacts that are not trusted (:mod:`harness.trust`; ``trust_all`` is the user's ``--trust``)
    never reach a full unpickle.
    """
    if jobs > 1:
        consume_pool.start_server()  # torch imports in the workers' server while the files are hashed here
    artifacts = collect(roots, trustmod.Trust(trust_all), threads=jobs)
    consumer = envmod.describe(device)
    known = expectations_module.load() if expectations is None else expectations
    jobs = max(1, min(jobs, len(artifacts)))
    with tempfile.TemporaryDirectory(prefix="ckpt-harness-") as workdir:
        if jobs == 1:
            def serial() -> Iterable[list[Record]]:
                reuse = Reuse()
                for artifact in artifacts:
                    if progress:
                        progress(artifact.label)
                    yield list(consume_artifact(artifact, consumer, Path(workdir), reuse))
            batches = serial()
        else:
            batches = consume_pool.run(artifacts, consumer, Path(workdir), jobs, plugins,
                                       lambda i: progress(artifacts[i].label) if progress else None)
        for batch in batches:
            for record in batch:
                record.problem = expectations_module.judge(record.__dict__, known)
                writer.write(record)
    return writer.records


def consume_artifact(artifact: Artifact, consumer: dict[str, Any], workdir: Path,
                     reuse: Optional[Reuse] = None) -> Iterable[Record]:
    """Records for one artifact: a load record per load mode, then one per check. ``reuse`` holds the outcomes
    of checks that give the same verdict for a byte-identical file consumed before (see :class:`Reuse`)."""
    reuse = reuse or Reuse()
    entry, producer = artifact.entry, artifact.manifest["env"]
    emit = _Emitter(artifact, consumer)
    fmt, reason = _lookup(FORMATS, entry["format"])
    if entry.get("status") != "ok":
        status = "skip" if entry.get("status") == "skip" else "error"
        yield emit("produce", "-", status, entry.get("detail", ""))
        return
    reason = reason or fmt.unavailable()
    if reason:
        yield emit("load", "-", "skip", reason)
        return
    case, case_missing = _lookup(CASES, entry["case"])
    case_missing = case_missing or (case.missing_requirement() if case else None)
    if case_missing and fmt.needs_code:
        for mode in fmt.load_modes:
            yield emit("load", mode, "skip", f"loading needs the case's code: {case_missing}")
        return
    map_location = consumer["device"] if producer["device"] != consumer["device"] else None
    refused = {mode: _refusal(fmt, artifact, mode) for mode in fmt.load_modes}
    sources = main_sources(fmt, entry, [mode for mode in fmt.load_modes if not refused[mode]])
    first_mode = None  # the first mode that loaded runs every check; later ones only those per mode
    for mode in fmt.load_modes:
        why = refused[mode]
        if why:
            yield emit("load", mode, "skip", why)
            continue
        started = time.perf_counter()
        loaded, caught, error = _load(fmt, artifact, mode, map_location, case, sources[mode])
        warned = [f"{w.category.__name__}: {one_line(str(w.message))}" for w in caught]
        if error:
            yield emit("load", mode, "error", _explain(error, artifact, mode, consumer), started, warned)
            continue
        yield emit("load", mode, "pass", _MAPPED if sources[mode] == "mmap" else "", started, warned)
        ctx = Context(fmt=fmt, entry=entry, case_section=artifact.manifest["cases"][entry["case"]],
                      artifact=artifact_path(artifact.manifest, entry), root=Path(artifact.manifest["_root"]),
                      loaded=loaded, load_mode=mode, case=case, case_missing=case_missing, producer=producer,
                      consumer=consumer, same_numerics=envmod.same_numerics(producer, consumer),
                      map_location=map_location, workdir=workdir, trusted=artifact.trusted)
        deferred: list[str] = []  # checks this mode leaves to the first mode that loaded
        for check in (c for c in CHECKS if c.concerns(entry)):
            if first_mode and not check.every_load_mode:
                deferred.append(check.name)
                continue
            started = time.perf_counter()
            key = reuse.key(artifact, check, mode, map_location)
            outcome, source = reuse.outcome(key) or (None, None)
            if outcome is None:
                with _guard(artifact):
                    outcome = _run_check(check, ctx.for_check(check))
                reuse.keep(key, outcome, artifact.label)
            record = emit(check.name, mode, outcome.status, outcome.detail, started)
            record.reused_from = source
            yield record
        if deferred:
            yield _folded(emit, first_mode or mode, mode, deferred)
        first_mode = first_mode or mode


class Reuse:
    """Outcomes of the checks that declare :attr:`~harness.checks.Check.same_for_identical_files`, kept for the
    next byte-identical artifact: 2.5.1 and 2.6.0 write the same bytes for most formats, and a device check or a
    second round trip of the same bytes in the same consumer gives the same verdict. The key holds everything
    such a check reads: the file's hash and size, format, case, load mode, map_location, whether it is trusted,
    and the manifest entry's fingerprint it compares with. A reused record names, in ``reused_from``, the
    artifact the check ran on."""

    def __init__(self) -> None:
        self._found: dict[tuple[Any, ...], tuple[Outcome, str]] = {}
        self._files: dict[int, tuple[dict[str, Any], Optional[tuple[Any, ...]]]] = {}

    @staticmethod
    def file_key(artifact: Artifact) -> Optional[tuple[Any, ...]]:
        """What makes two artifacts the same file for these checks; None for an entry without a file."""
        entry = artifact.entry
        if entry.get("status") != "ok":
            return None
        fingerprint = json.dumps(entry.get("fingerprint"), sort_keys=True, default=str)
        return (entry.get("file_hash"), entry.get("file_bytes"), entry.get("format"), entry.get("case"),
                artifact.trusted, hashlib.sha256(fingerprint.encode()).hexdigest())

    def key(self, artifact: Artifact, check: Check, mode: str, map_location: Any) -> Optional[tuple[Any, ...]]:
        """The key of this check's outcome, or None when it may not be reused."""
        if not check.same_for_identical_files:
            return None
        kept = self._files.get(id(artifact.entry))
        if kept is None or kept[0] is not artifact.entry:  # the fingerprint's digest once per entry, not per check
            kept = self._files[id(artifact.entry)] = (artifact.entry, self.file_key(artifact))
        found = kept[1]
        return None if found is None else (*found, check.name, mode, repr(map_location))

    def outcome(self, key: Optional[tuple[Any, ...]]) -> Optional[tuple[Outcome, str]]:
        """The kept outcome for ``key`` and the label of the artifact it was run on, or None (run the check)."""
        return self._found.get(key) if key is not None else None

    def keep(self, key: Optional[tuple[Any, ...]], outcome: Outcome, label: str) -> None:
        """Keep ``outcome``, run on the artifact ``label``, for the next artifact with the same key."""
        if key is not None and key not in self._found:
            self._found[key] = (outcome, label)


def identical_files(artifacts: Sequence[Artifact]) -> list[list[int]]:
    """Indices of ``artifacts`` in groups of byte-identical files (:meth:`Reuse.file_key`), first-seen order; an
    artifact without a file is a group of its own. consume_pool hands a group to one worker, which reuses."""
    groups: dict[Any, list[int]] = {}
    for index, artifact in enumerate(artifacts):
        groups.setdefault(Reuse.file_key(artifact) or ("alone", index), []).append(index)
    return list(groups.values())


#: the check name of the one record that stands for the checks a later load mode leaves to the first
FOLDED_CHECK = "checks-of-first-mode"

#: an artifact from this size on is mapped by its main loads (``torch.load(mmap=True)``), where the
#: format's container and this release can (:func:`harness.compat.has_mmap`, the format's capabilities)
MMAP_MIN_BYTES = 32 * 2**20
_MAPPED = f"read with mmap=True (file of {MMAP_MIN_BYTES // 2**20} MB or more)"


def main_sources(fmt: Format, entry: dict[str, Any], modes: Sequence[str]) -> dict[str, str]:
    """The source of each load mode's main load: ``path``, or ``mmap`` for a big artifact.

    Mapping skips copying the file into fresh memory (vgg16, 528 MB: a load of ~1.3 s becomes ~0.02 s,
    its pages then read from the page cache as the checks touch them). The last mode still reads the file from
    its path, so both sources of every big artifact stay checked against the manifest (the tensors check
    runs under every mode); with only one mode to load, that one reads the path.
    """
    big = int(entry.get("file_bytes") or 0) >= MMAP_MIN_BYTES and "mmap" in fmt.capabilities.sources
    return {mode: "mmap" if big and mode != modes[-1] else "path" for mode in modes}


def _refusal(fmt: Format, artifact: Artifact, mode: str) -> Optional[str]:
    """Why this mode is not loaded here (a skip record), or None."""
    if mode != "default" and not compat.has_weights_only():
        return "this torch.load has no weights_only parameter"
    if not artifact.trusted and trustmod.full_unpickle(fmt.pickled, mode, fmt.capabilities.unpickles):
        return f"{_FULL_UNPICKLE[mode if fmt.pickled else 'loader']}; {trustmod.UNTRUSTED}"
    return None


def _folded(emit: _Emitter, first_mode: str, mode: str, names: list[str]) -> Record:
    """One skip record standing for ``names`` (``count`` = how many): a pickle loaded again in another
    mode gives the same object, which that mode's own tensors check proves, so those checks ran once."""
    record = emit(FOLDED_CHECK, mode, "skip", f"{len(names)} checks ran under load mode {first_mode} only "
                  f"({', '.join(names)}); the tensors check shows this load gives the same tensors")
    record.count = len(names)
    return record


_FULL_UNPICKLE = {"unsafe": "weights_only=False is a full unpickle",
                  "default": "this release's default torch.load is a full unpickle",
                  "loader": "this format's loader runs a full unpickle (pickle.load)"}


def _guard(artifact: Artifact) -> Any:
    """Around every load and check of an untrusted artifact: any torch.load inside is weights_only
    (torch.export.load, for one, falls back to weights_only=False by itself)."""
    return contextlib.nullcontext() if artifact.trusted else compat.RefuseFullUnpickle()


def _load(fmt: Format, artifact: Artifact, mode: str, map_location: Any, case: Optional[Case],
          source: str = "path") -> tuple[Any, list[warnings.WarningMessage], Optional[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            request = LoadRequest(mode, map_location, source, case=case, trusted=artifact.trusted)
            with _guard(artifact):
                return fmt.open(artifact_path(artifact.manifest, artifact.entry), request), caught, None
        except Exception as exc:
            return None, caught, describe_exception(exc)


def _explain(error: str, artifact: Artifact, mode: str, consumer: dict[str, Any]) -> str:
    """Add what a weights_only refusal needs: the globals to allowlist, where the release can list them."""
    weights_only = mode == "weights_only" or (mode == "default" and consumer.get("default_weights_only"))
    if not weights_only:
        return error
    needed = compat.unsafe_globals(artifact_path(artifact.manifest, artifact.entry))
    if needed:
        return f"needs safe globals {', '.join(needed)} | {error}"
    return error


def _run_check(check: Check, ctx: Context) -> Outcome:
    reason = check.applies(ctx.fmt, ctx.entry)
    if reason:
        return Outcome("skip", reason)
    if check.needs_case and ctx.case_missing:
        return Outcome("skip", f"needs the case's code: {ctx.case_missing}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return check.run(ctx)
    except Exception as exc:
        return Outcome("error", describe_exception(exc))


def _lookup(registry: Any, name: str) -> tuple[Any, Optional[str]]:
    try:
        return registry.get(name), None
    except ValueError:
        return None, f"{registry.kind} {name!r} is unknown to this harness version"


class _Emitter:
    """Builds records that share an artifact's identity."""

    def __init__(self, artifact: Artifact, consumer: dict[str, Any]) -> None:
        self.artifact = artifact
        self.consumer = envmod.brief(consumer)
        self.producer = envmod.brief(artifact.manifest["env"])

    def __call__(self, check: str, mode: str, status: str, detail: str, started: Optional[float] = None,
                 warned: Optional[list[str]] = None) -> Record:
        entry = self.artifact.entry
        # the record's validation refuses a status outside Status
        return Record(producer=self.producer, consumer=self.consumer, case=entry["case"], format=entry["format"],
                      check=check, load_mode=mode, status=cast(Status, status), detail=detail,
                      duration_s=round(time.perf_counter() - started, 6) if started else 0.0,
                      artifact=f"{self.artifact.manifest['env_id']}/{entry.get('file', '')}",
                      warnings=warned or [])
