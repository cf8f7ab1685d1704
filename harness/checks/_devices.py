"""What the device checks share: the ``map_location`` forms, loads from every source the format's
loader takes, how a load differs from the manifest, and CUDA-tagged copies made through the format.

Which forms and sources a format gets comes from its :class:`~harness.formats.Capabilities`; the
checks never decide from the format's name or whether it is a pickle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from harness import compat, cuda_tags
from harness.checks import Context
from harness.checks._compare import fingerprint_differences, summarize
from harness.fingerprint import fingerprint, flatten
from harness.formats import SOURCES, Format

#: PyTorch's words when a CUDA-tagged storage meets a machine without CUDA (stable since 0.4)
CUDA_UNAVAILABLE = "Attempting to deserialize object on a CUDA device"
#: PyTorch's words when the tagged device index is beyond the machine's devices
CUDA_NO_SUCH_DEVICE = "torch.cuda.device_count() is"
#: artifacts above this size are left to the smaller ones (each form loads the file again)
MAX_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Form:
    """One way of passing ``map_location`` (``kind`` as in MAP_LOCATION_FORMS), and where tensors must land."""

    label: str
    value: Callable[[], Any]
    device: str
    kind: str = "str"


def _keep_storage(storage: Any, location: str) -> Any:
    return storage


def forms() -> list[Form]:
    """Every form this machine can check: the CPU ones, 'meta' where the release maps to it, CUDA ones on a GPU."""
    found = [
        Form("'cpu'", lambda: "cpu", "cpu", "str"),
        Form("torch.device('cpu')", lambda: torch.device("cpu"), "cpu", "device"),
        Form("{'cuda:0': 'cpu'}", lambda: {"cuda:0": "cpu"}, "cpu", "dict"),
        Form("lambda storage, loc: storage", lambda: _keep_storage, "cpu", "callable"),
    ]
    if compat.map_location_meta() is None:
        found.append(Form("'meta'", lambda: "meta", "meta", "meta"))
    if compat.cuda_device_count():
        found.append(Form("'cuda:0'", lambda: "cuda:0", "cuda:0", "str"))
        found.append(Form("{'cpu': 'cuda:0'}", lambda: {"cpu": "cuda:0"}, "cuda:0", "dict"))
    return found


def forms_for(fmt: Format) -> list[Form]:
    """The forms of :func:`forms` the format's loader takes."""
    return [f for f in forms() if f.kind in fmt.capabilities.map_locations]


def sources_for(fmt: Format) -> list[str]:
    """The sources the format's loader reads from, in SOURCES order."""
    return [s for s in SOURCES if s in fmt.capabilities.sources]


#: sources read with the first form only. torch.load reads a BytesIO with the reader it uses for a path (the
#: zip reader over a buffer instead of a file; the legacy reader over the same kind of file object), and the
#: map_location is applied afterwards, to each storage that reader returns: one load shows the source works,
#: and every form is shown from the path. mmap stays crossed with every form: its storages are slices of one
#: file mapping, which each form's restore treats in its own way (kept as is, moved, made meta).
FIRST_FORM_ONLY_SOURCES = frozenset({"BytesIO"})


def pairs(fmt: Format) -> list[tuple[Form, str]]:
    """The (form, source) loads of :func:`every_form`: every form from every source, but a source of
    :data:`FIRST_FORM_ONLY_SOURCES` with the first form only."""
    found = forms_for(fmt)
    return [(form, source) for form in found for source in sources_for(fmt)
            if source not in FIRST_FORM_ONLY_SOURCES or form is found[0]]


def sources_text(fmt: Format) -> str:
    """Where :func:`pairs` loads from, in words: ``path/mmap; 'cpu' from BytesIO``."""
    found = forms_for(fmt)
    every = [s for s in sources_for(fmt) if s not in FIRST_FORM_ONLY_SOURCES]
    first = [s for s in sources_for(fmt) if s in FIRST_FORM_ONLY_SOURCES]
    text = "/".join(every)
    if first and found:
        text += f"; {found[0].label} from {'/'.join(first)}"
    return text


def applies(fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
    """None when the format's loader takes a map_location form to check and the artifact is small enough."""
    if "module" in fmt.holds:
        return f"{fmt.name} holds a module or program; map_location is checked on the formats that hold state"
    if not {f.kind for f in forms()} & fmt.capabilities.map_locations:
        return f"{fmt.name}'s loader takes no map_location form"
    if entry.get("file_bytes", 0) > MAX_BYTES:
        return (f"{entry['file_bytes'] / 2**20:.0f} MB: every form is checked on the artifacts under "
                f"{MAX_BYTES // 2**20} MB")
    return None


def retaggable(fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
    """None when a CUDA-tagged copy of the artifact can be made and checked, else why not."""
    if not fmt.capabilities.cuda_retaggable:
        return f"{fmt.name}'s storages carry no device tag to rewrite"
    return applies(fmt, entry)


def differences(ctx: Context, loaded: Any, device: str) -> list[str]:
    """How a load differs from the manifest's fingerprint, and any tensor not on ``device``."""
    contents = ctx.fmt.contents(loaded)
    expected = ctx.entry["fingerprint"]["tensors"]
    tensors = {path: leaf for path, leaf in flatten(contents) if isinstance(leaf, torch.Tensor)}
    misplaced = sorted(p for p, t in tensors.items() if torch.device(device) != t.device)
    if misplaced:  # values on another device are not comparable (meta has none)
        return [f"{_names(misplaced)} on {tensors[misplaced[0]].device}, not {device}"]
    if device == "meta":
        actual = {p: {"dtype": str(t.dtype), "shape": list(t.shape), "stride": list(t.stride())}
                  for p, t in tensors.items()}
        wanted = {p: d for p, d in expected.items() if not d["dtype"].startswith("numpy.")}
        return fingerprint_differences(wanted, actual, ("dtype", "shape", "stride"))
    return fingerprint_differences(expected, fingerprint(contents)["tensors"], ("dtype", "shape", "stride", "hash"))


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def every_form(ctx: Context, path: Optional[Path] = None) -> tuple[int, list[str]]:
    """Load the artifact (or a copy at ``path``) with every form from every source (:func:`pairs`);
    (loads tried, problems)."""
    count, problems = 0, []
    for form, source in pairs(ctx.fmt):
        count += 1
        try:
            loaded = ctx.load(form.value(), source, path)
        except Exception as exc:
            problems.append(f"{form.label} from {source} raised {type(exc).__name__}: {short(exc)}")
            continue
        found = differences(ctx, loaded, form.device)
        if found:
            problems.append(f"{form.label} from {source}: {summarize(found, len(found), 'problems')}")
    return count, problems


def short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(fmt: Format, count: int) -> str:
    labels = ", ".join(f.label for f in forms_for(fmt))
    return f"{count} loads ({labels}) bit-identical"


@dataclasses.dataclass
class TaggedCopy:
    path: Path
    records: list[cuda_tags.StorageRecord]


def tagged_copy(ctx: Context, folder: Path, location: str) -> TaggedCopy:
    """A copy of the artifact in ``folder`` with every storage tagged ``location``, made by the format
    and checked by reading its storage records back."""
    original = ctx.fmt.storage_locations(ctx.artifact)
    path = folder / f"{location.replace(':', '_')}{ctx.artifact.suffix}"
    records = ctx.fmt.retag(ctx.artifact, path, location)
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
class Attempt:
    loaded: Any = None
    error: Optional[str] = None
    seen: list[str] = dataclasses.field(default_factory=list)


def attempt(ctx: Context, path: Path, map_location: Any) -> Attempt:
    """Load the copy at ``path``, recording the error instead of raising and the locations torch saw."""
    with cuda_tags.observed_locations() as seen:
        try:
            return Attempt(loaded=ctx.load(map_location, path=path), seen=list(seen))
        except Exception as exc:
            return Attempt(error=f"{type(exc).__name__}: {' '.join(str(exc).split())}", seen=list(seen))
