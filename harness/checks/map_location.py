"""Device mapping: every ``map_location`` form, from a path, from BytesIO and with ``mmap=True``.

- ``map_location``: the artifact as written, loaded with each form; bit-identical to the manifest.
- ``cuda_tagged``: a copy whose storages say ``cuda:0`` (made here without a GPU, read back to
  prove it, see :mod:`harness.cuda_tags`): the default load raises PyTorch's CUDA-deserialize
  error where there is no GPU, every form loads it onto the CPU bit-identical, and a ``cuda:1``
  copy with ``{'cuda:1': 'cuda:0'}`` is remapped as asked.
- ``optimizer_device``: a CUDA-tagged training checkpoint mapped to the CPU resumes correctly and
  Adam's ``step`` stays a CPU tensor (pytorch#80809); with a GPU, a CPU checkpoint resumes on it.

Copies live in the consumer's private work folder; the artifact is never modified.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from harness import compat, cuda_tags
from harness.case import make_optimizers
from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.checks._compare import fingerprint_differences, max_abs_difference, summarize
from harness.fingerprint import fingerprint, flatten
from harness.formats import Format
from harness.formats._torch_pickle import WEIGHTS_ONLY_FOR_MODE

#: PyTorch's words when a CUDA-tagged storage meets a machine without CUDA (stable since 0.4)
CUDA_UNAVAILABLE = "Attempting to deserialize object on a CUDA device"
#: PyTorch's words when the tagged device index is beyond the machine's devices
CUDA_NO_SUCH_DEVICE = "torch.cuda.device_count() is"
#: artifacts above this size are left to the smaller ones (each form loads the file again)
MAX_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Form:
    """One way of passing ``map_location``, and the device the tensors must end up on."""

    label: str
    value: Callable[[], Any]
    device: str


def _keep_storage(storage: Any, location: str) -> Any:
    return storage


def forms() -> list[Form]:
    """Every form this machine can check: the CPU ones, 'meta' where the release maps to it, CUDA ones on a GPU."""
    found = [
        Form("'cpu'", lambda: "cpu", "cpu"),
        Form("torch.device('cpu')", lambda: torch.device("cpu"), "cpu"),
        Form("{'cuda:0': 'cpu'}", lambda: {"cuda:0": "cpu"}, "cpu"),
        Form("lambda storage, loc: storage", lambda: _keep_storage, "cpu"),
    ]
    if compat.map_location_meta() is None:
        found.append(Form("'meta'", lambda: "meta", "meta"))
    if compat.cuda_device_count():
        found.append(Form("'cuda:0'", lambda: "cuda:0", "cuda:0"))
        found.append(Form("{'cpu': 'cuda:0'}", lambda: {"cpu": "cuda:0"}, "cuda:0"))
    return found


@dataclasses.dataclass(frozen=True)
class Source:
    """Where ``torch.load`` reads from: the path, an in-memory BytesIO, or the path with mmap=True."""

    label: str
    mmap: bool = False
    in_memory: bool = False


def sources(path: Path) -> list[Source]:
    found = [Source("path"), Source("BytesIO", in_memory=True)]
    if compat.has_mmap() and zipfile.is_zipfile(path):
        found.append(Source("mmap", mmap=True))
    return found


def load(path: Path, mode: str, map_location: Any, source: Source = Source("path")) -> Any:
    """``torch.load`` of ``path`` in load mode ``mode`` with ``map_location``, from ``source``."""
    kwargs = compat.torch_load_kwargs(WEIGHTS_ONLY_FOR_MODE[mode], map_location)
    if source.mmap:
        kwargs["mmap"] = True
    target: Any = io.BytesIO(path.read_bytes()) if source.in_memory else path
    return torch.load(target, **kwargs)


def differences(ctx: Context, loaded: Any, device: str) -> list[str]:
    """How a load differs from the manifest's fingerprint, and any tensor not on ``device``."""
    contents = ctx.fmt.contents(loaded)
    expected = ctx.entry["fingerprint"]["tensors"]
    tensors = {path: leaf for path, leaf in flatten(contents) if isinstance(leaf, torch.Tensor)}
    misplaced = sorted(p for p, t in tensors.items() if str(t.device) != device and not _same_device(t, device))
    if misplaced:  # values on another device are not comparable (meta has none)
        return [f"{_names(misplaced)} on {tensors[misplaced[0]].device}, not {device}"]
    if device == "meta":
        actual = {p: {"dtype": str(t.dtype), "shape": list(t.shape), "stride": list(t.stride())}
                  for p, t in tensors.items()}
        wanted = {p: d for p, d in expected.items() if not d["dtype"].startswith("numpy.")}
        return fingerprint_differences(wanted, actual, ("dtype", "shape", "stride"))
    return fingerprint_differences(expected, fingerprint(contents)["tensors"],
                                              ("dtype", "shape", "stride", "hash"))


def _same_device(tensor: torch.Tensor, device: str) -> bool:
    return torch.device(device) == tensor.device


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def _applies(fmt: Format, entry: dict[str, Any]) -> Optional[str]:
    if not fmt.pickled or fmt.models != "one" or "module" in fmt.holds:
        return f"{fmt.name} is not a torch.save pickle of one model's state"
    if entry.get("file_bytes", 0) > MAX_BYTES:
        return (f"{entry['file_bytes'] / 2**20:.0f} MB: every form is checked on the artifacts under "
                f"{MAX_BYTES // 2**20} MB")
    return None


def _every_form(ctx: Context, path: Path) -> tuple[int, list[str]]:
    """Load ``path`` with every form from every source; (loads done, problems)."""
    count, problems = 0, []
    for form in forms():
        for source in sources(path):
            try:
                loaded = load(path, ctx.load_mode, form.value(), source)
            except Exception as exc:
                problems.append(f"{form.label} from {source.label} raised {type(exc).__name__}: {_short(exc)}")
                continue
            count += 1
            found = differences(ctx, loaded, form.device)
            if found:
                problems.append(f"{form.label} from {source.label}: {summarize(found, len(found), 'problems')}")
    return count, problems


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(count: int) -> str:
    labels = ", ".join(f.label for f in forms())
    return f"{count} loads ({labels}) bit-identical"


class MapLocationCheck(Check):
    name = "map_location"
    description = "every map_location form (str, device, dict, callable, 'meta') from a path, BytesIO and mmap"

    def applies(self, fmt: Format, entry: dict[str, Any]) -> Optional[str]:
        return _applies(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        count, problems = _every_form(ctx, ctx.artifact)
        if problems:
            return failed(summarize(problems, count + len(problems), "loads"))
        return passed(_summary(count) + " from " + "/".join(s.label for s in sources(ctx.artifact)))


@dataclasses.dataclass
class TaggedCopy:
    path: Path
    records: list[cuda_tags.StorageRecord]


def tagged_copy(ctx: Context, folder: Path, location: str) -> TaggedCopy:
    """A copy of the artifact in ``folder`` with every storage tagged ``location``, checked by reading it back."""
    original = cuda_tags.storage_locations(ctx.artifact)
    path = folder / f"{location.replace(':', '_')}{ctx.artifact.suffix}"
    records = cuda_tags.retag(ctx.artifact, path, location)
    if [r.key for r in records] != [r.key for r in original] or {r.location for r in records} != {location}:
        raise cuda_tags.TagError(f"read-back of the {location} copy shows {_locations(records)}, "
                                 f"not {len(original)} storages on {location}")
    return TaggedCopy(path, records)


def _locations(records: list[cuda_tags.StorageRecord]) -> str:
    found: dict[str, int] = {}
    for record in records:
        found[record.location] = found.get(record.location, 0) + 1
    return ", ".join(f"{n}× {loc}" for loc, n in sorted(found.items())) or "no storages"


@dataclasses.dataclass
class _Attempt:
    loaded: Any = None
    error: Optional[str] = None
    seen: list[str] = dataclasses.field(default_factory=list)


def _attempt(path: Path, mode: str, map_location: Any) -> _Attempt:
    with cuda_tags.observed_locations() as seen:
        try:
            return _Attempt(loaded=load(path, mode, map_location), seen=list(seen))
        except Exception as exc:
            return _Attempt(error=f"{type(exc).__name__}: {' '.join(str(exc).split())}", seen=list(seen))



class CudaTaggedCheck(Check):
    name = "cuda_tagged"
    description = ("a CUDA-tagged copy (made without a GPU, read back): the default load's CUDA error, every "
                   "map_location form onto the CPU bit-identical, {'cuda:1': 'cuda:0'} remapped as asked")

    def applies(self, fmt: Format, entry: dict[str, Any]) -> Optional[str]:
        return _applies(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="cuda-tags-") as folder:
            try:
                copy = tagged_copy(ctx, Path(folder), "cuda:0")
                second = tagged_copy(ctx, Path(folder), "cuda:1")
            except cuda_tags.TagError as exc:
                return failed(f"could not make a CUDA-tagged copy: {exc}")
            problems = self._default_load(ctx, copy)
            count, found = _every_form(ctx, copy.path)
            problems += [f"cuda:0 copy, {p}" for p in found]
            remap, found = self._remap(ctx, second)
            problems += found
        if problems:
            return failed("; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
        default = ("default load raised the CUDA-deserialize error" if not compat.cuda_device_count()
                   else "default load put every tensor on cuda:0")
        return passed(f"{len(copy.records)} storages retagged cuda:0 and read back; {default}; "
                      f"{_summary(count)} onto {'/'.join(sorted({f.device for f in forms()}))}; {remap}")

    def _default_load(self, ctx: Context, copy: TaggedCopy) -> list[str]:
        attempt = _attempt(copy.path, ctx.load_mode, None)
        if compat.cuda_device_count():
            if attempt.error:
                return [f"default load of the cuda:0 copy on a GPU raised {attempt.error[:200]}"]
            return [f"default load: {p}" for p in differences(ctx, attempt.loaded, "cuda:0")]
        if attempt.error is None:
            return ["default load of the cuda:0 copy succeeded without CUDA (expected PyTorch's CUDA error)"]
        if CUDA_UNAVAILABLE not in attempt.error:
            return [f"default load raised something else than {CUDA_UNAVAILABLE!r}: {attempt.error[:200]}"]
        return []

    def _remap(self, ctx: Context, second: TaggedCopy) -> tuple[str, list[str]]:
        """The dict is keyed by the file's tag, and {'cuda:1': 'cuda:0'} reaches the deserializer as cuda:0."""
        problems = []
        matched = _attempt(second.path, ctx.load_mode, {"cuda:1": "cpu"})
        if matched.error:
            problems.append(f"{{'cuda:1': 'cpu'}} on the cuda:1 copy raised {matched.error[:200]}")
        else:
            problems += [f"{{'cuda:1': 'cpu'}}: {p}" for p in differences(ctx, matched.loaded, "cpu")]
        remapped = _attempt(second.path, ctx.load_mode, {"cuda:1": "cuda:0"})
        if not remapped.seen or set(remapped.seen) != {"cuda:0"}:
            problems.append(f"{{'cuda:1': 'cuda:0'}} reached the deserializers as {remapped.seen or 'nothing'}")
        gpus = compat.cuda_device_count()
        if gpus:
            if remapped.error:
                problems.append(f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {remapped.error[:200]}")
            else:
                problems += [f"{{'cuda:1': 'cuda:0'}}: {p}" for p in differences(ctx, remapped.loaded, "cuda:0")]
        elif remapped.error is None or CUDA_UNAVAILABLE not in remapped.error:
            problems.append(f"{{'cuda:1': 'cuda:0'}} without CUDA: expected PyTorch's CUDA error, got "
                            f"{remapped.error or 'a successful load'}")
        unmatched = _attempt(second.path, ctx.load_mode, {"cuda:0": "cpu"})
        if gpus == 1 and (unmatched.error is None or CUDA_NO_SUCH_DEVICE not in unmatched.error):
            problems.append(f"cuda:1 copy on a 1-GPU machine: expected {CUDA_NO_SUCH_DEVICE!r}, got "
                            f"{unmatched.error or 'a successful load'}")
        if not gpus and (unmatched.error is None or CUDA_UNAVAILABLE not in unmatched.error):
            problems.append(f"{{'cuda:0': 'cpu'}} must not match a cuda:1 tag; got {unmatched.error or 'a CPU load'}")
        where = "landed on cuda:0" if gpus else "raised the CUDA error"
        return (f"cuda:1 copy: {{'cuda:1': 'cpu'}} loads bit-identical, {{'cuda:0': 'cpu'}} does not match, "
                f"{{'cuda:1': 'cuda:0'}} reached the deserializer as cuda:0 and {where}"), problems


class OptimizerDeviceCheck(Check):
    name = "optimizer_device"
    description = ("optimizer state moved across devices resumes correctly; Adam's step stays a CPU tensor "
                   "(pytorch#80809)")
    needs_case = True

    def applies(self, fmt: Format, entry: dict[str, Any]) -> Optional[str]:
        if "optimizer" not in fmt.holds:
            return f"{fmt.name} holds no optimizer state"
        return _applies(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="cuda-tags-") as folder:
            try:
                copy = tagged_copy(ctx, Path(folder), "cuda:0")
            except cuda_tags.TagError as exc:
                return failed(f"could not make a CUDA-tagged copy: {exc}")
            loaded = load(copy.path, ctx.load_mode, "cpu")
        misplaced = steps_not_on_cpu(ctx, loaded, "cpu")
        if misplaced:
            return failed(f"after map_location='cpu' and optimizer.load_state_dict, step is not a CPU tensor: "
                          f"{misplaced}")
        # Imported here, not at module level: importing another check module during discovery would
        # register it out of order (the resume check must run after resave has fingerprinted the load).
        from harness.checks.resume import ResumeCheck

        resumed = ResumeCheck().run(dataclasses.replace(ctx, loaded=loaded))
        if resumed.status != "pass":
            return Outcome(resumed.status, f"cuda:0-tagged checkpoint mapped to cpu: {resumed.detail}")
        detail = f"cuda:0-tagged checkpoint mapped to cpu: step on cpu; {resumed.detail}"
        if compat.cuda_device_count():
            problem, note = resume_on_cuda(ctx)
            if problem:
                return failed(problem)
            detail += f"; {note}"
        return passed(detail)


def _restored_optimizers(ctx: Context, loaded: Any, device: str) -> Iterator[Any]:
    state = ctx.fmt.resumable(loaded)
    models = ctx.case.fresh_models()
    for name, model in models.items():
        model.to(device)
        model.load_state_dict(state.model_states[name])
    optimizers, _ = make_optimizers(ctx.case, models)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state.optimizer_states[name])
        yield models[name], optimizer


def steps_not_on_cpu(ctx: Context, loaded: Any, device: str) -> str:
    """'' when every tensor ``step`` of the restored optimizers is on the CPU, else where they are."""
    wrong = []
    for _, optimizer in _restored_optimizers(ctx, loaded, device):
        for state in optimizer.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device.type != "cpu":
                wrong.append(str(step.device))
    return ", ".join(sorted(set(wrong)))


def resume_on_cuda(ctx: Context) -> tuple[Optional[str], str]:
    """A CPU checkpoint loaded with map_location='cuda:0' into a model on cuda:0 resumes within tolerance."""
    from harness.case import train_step

    loaded = load(ctx.artifact, ctx.load_mode, "cuda:0")
    pairs = list(_restored_optimizers(ctx, loaded, "cuda:0"))
    wrong = [str(s["step"].device) for _, o in pairs for s in o.state.values()
             if isinstance(s.get("step"), torch.Tensor) and s["step"].device.type != "cpu"]
    if wrong:
        return f"map_location='cuda:0' then optimizer.load_state_dict put step on {sorted(set(wrong))}", ""
    reference = ctx.stored.get("next_step")
    if reference is None:
        return None, "GPU resume not compared (no stored next step)"
    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in pairs[0][0].modules()):
        return None, "step on cpu after loading onto cuda:0 (dropout draws from the CUDA generator: values not compared)"
    models = {"model": pairs[0][0]}
    optimizers = {"model": pairs[0][1]}
    schedulers = {"model": torch.optim.lr_scheduler.StepLR(pairs[0][1], step_size=1, gamma=0.9)}
    state = ctx.fmt.resumable(loaded)
    schedulers["model"].load_state_dict(state.scheduler_states["model"])
    inputs = {n: tuple(x.to("cuda:0") for x in args) for n, args in ctx.stored["inputs"].items()}
    torch.manual_seed(0)
    train_step(models, optimizers, schedulers, inputs)
    actual = {f"model.{k}": v for k, v in models["model"].state_dict().items()}
    worst, where = max_abs_difference(reference, actual)
    atol = float(ctx.case_section["resume_atol"])
    if worst > atol:
        return f"resumed on cuda:0, {worst:.3g} away from the producer's next step at {where} (atol {atol:g})", ""
    return None, f"resumed on cuda:0 within {worst:.3g} (step stays on cpu)"


register(MapLocationCheck())
register(CudaTaggedCheck())
register(OptimizerDeviceCheck())
