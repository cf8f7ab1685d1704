"""``cuda_tagged``: a copy whose storages say ``cuda:0`` (made by the format without a GPU and read
back to prove it, see :mod:`harness.cuda_tags`): the default load raises PyTorch's CUDA-deserialize
error where there is no GPU, every form loads it onto the CPU bit-identical, and a ``cuda:1`` copy with
``{'cuda:1': 'cuda:0'}`` is remapped as asked. Copies live in the consumer's private work folder."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from harness import compat, cuda_tags
from harness.checks import Check, Context, Outcome, _devices, failed, passed, register
from harness.checks._devices import TaggedCopy, attempt, differences
from harness.formats import Format


class CudaTaggedCheck(Check):
    name = "cuda_tagged"
    same_for_identical_files = True
    description = ("a CUDA-tagged copy (made without a GPU, read back): the default load's CUDA error, every "
                   "map_location form onto the CPU bit-identical, {'cuda:1': 'cuda:0'} remapped as asked")

    def applies(self, fmt: Format, entry: Mapping[str, Any]) -> Optional[str]:
        return _devices.retaggable(fmt, entry)

    def run(self, ctx: Context) -> Outcome:
        with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="cuda-tags-") as folder:
            try:
                copy = _devices.tagged_copy(ctx, Path(folder), "cuda:0")
                second = _devices.tagged_copy(ctx, Path(folder), "cuda:1")
            except cuda_tags.TagError as exc:
                return failed(f"could not make a CUDA-tagged copy: {exc}")
            problems = self._default_load(ctx, copy)
            count, found = _devices.every_form(ctx, copy.path)
            problems += [f"cuda:0 copy, {p}" for p in found]
            remap, found = self._remap(ctx, second)
            problems += found
        if problems:
            return failed("; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
        default = ("default load raised the CUDA-deserialize error" if not compat.cuda_device_count()
                   else "default load put every tensor on cuda:0")
        devices = "/".join(sorted({f.device for f in _devices.forms_for(ctx.fmt)}))
        return passed(f"{len(copy.records)} storages retagged cuda:0 and read back; {default}; "
                      f"{_devices.summary(ctx.fmt, count)} onto {devices}; {remap}")

    def _default_load(self, ctx: Context, copy: TaggedCopy) -> list[str]:
        tried = attempt(ctx, copy.path, None)
        if compat.cuda_device_count():
            if tried.error:
                return [f"default load of the cuda:0 copy on a GPU raised {tried.error[:200]}"]
            return [f"default load: {p}" for p in differences(ctx, tried.loaded, "cuda:0")]
        if tried.error is None:
            return ["default load of the cuda:0 copy succeeded without CUDA (expected PyTorch's CUDA error)"]
        if _devices.CUDA_UNAVAILABLE not in tried.error:
            return [f"default load raised something else than {_devices.CUDA_UNAVAILABLE!r}: {tried.error[:200]}"]
        return []

    def _remap(self, ctx: Context, second: TaggedCopy) -> tuple[str, list[str]]:
        """The dict is keyed by the file's tag, and {'cuda:1': 'cuda:0'} reaches the deserializer as cuda:0."""
        problems = []
        matched = attempt(ctx, second.path, {"cuda:1": "cpu"})
        if matched.error:
            problems.append(f"{{'cuda:1': 'cpu'}} on the cuda:1 copy raised {matched.error[:200]}")
        else:
            problems += [f"{{'cuda:1': 'cpu'}}: {p}" for p in differences(ctx, matched.loaded, "cpu")]
        remapped = attempt(ctx, second.path, {"cuda:1": "cuda:0"})
        if not remapped.seen or set(remapped.seen) != {"cuda:0"}:
            problems.append(f"{{'cuda:1': 'cuda:0'}} reached the deserializers as {remapped.seen or 'nothing'}")
        gpus = compat.cuda_device_count()
        if gpus:
            if remapped.error:
                problems.append(f"{{'cuda:1': 'cuda:0'}} raised on a GPU: {remapped.error[:200]}")
            else:
                problems += [f"{{'cuda:1': 'cuda:0'}}: {p}" for p in differences(ctx, remapped.loaded, "cuda:0")]
        elif remapped.error is None or _devices.CUDA_UNAVAILABLE not in remapped.error:
            problems.append(f"{{'cuda:1': 'cuda:0'}} without CUDA: expected PyTorch's CUDA error, got "
                            f"{remapped.error or 'a successful load'}")
        unmatched = attempt(ctx, second.path, {"cuda:0": "cpu"})
        if gpus == 1 and (unmatched.error is None or _devices.CUDA_NO_SUCH_DEVICE not in unmatched.error):
            problems.append(f"cuda:1 copy on a 1-GPU machine: expected {_devices.CUDA_NO_SUCH_DEVICE!r}, got "
                            f"{unmatched.error or 'a successful load'}")
        if not gpus and (unmatched.error is None or _devices.CUDA_UNAVAILABLE not in unmatched.error):
            problems.append(f"{{'cuda:0': 'cpu'}} must not match a cuda:1 tag; got {unmatched.error or 'a CPU load'}")
        where = "landed on cuda:0" if gpus else "raised the CUDA error"
        return (f"cuda:1 copy: {{'cuda:1': 'cpu'}} loads bit-identical, {{'cuda:0': 'cpu'}} does not match, "
                f"{{'cuda:1': 'cuda:0'}} reached the deserializer as cuda:0 and {where}"), problems


register(CudaTaggedCheck())
