"""``torch.distributed.checkpoint`` (DCP): a folder of ``.distcp`` data files and a ``.metadata`` file,
written with ``dcp.save`` and read with ``dcp.load`` — here without a process group; the 2-process gloo
runs and the 2 → 1 / 1 → 2 resharding are in :mod:`harness.formats.dcp_ranks`.

The payload is the app state users hand to DCP: ``{"model": get_model_state_dict(model), "optim":
get_optimizer_state_dict(model, optimizer)}`` (parameter names as keys), plus the scheduler state,
the torch RNG state and the epoch, so that a resume repeats the uninterrupted step. Loading builds a
fresh model and optimizer from the case, loads into their state dicts in place and returns the same
kind of dict.

DCP reads ``.metadata`` with plain ``pickle.load``: loading a folder runs whatever that pickle names.
The capabilities say so (``unpickles``), and :meth:`Format.open` loads such a folder only for a trusted
request — an artifact the harness wrote and whose hash it verified — like ``weights_only=False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness import compat
from harness.case import Case, Prepared, make_optimizers
from harness.formats import Capabilities, Format, Resumable, Source, register


def app_state(model: nn.Module, optimizer: Any) -> dict[str, Any]:
    """DCP's model and optimizer state dicts (fully qualified parameter names as keys)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}


class DcpError(RuntimeError):
    """DCP raised its CheckpointException, which derives from BaseException: re-raised as an Exception so
    that a failed load is a record, never the end of the run."""


def _checked(action: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        return action(*args, **kwargs)
    except CheckpointException as exc:
        # a rank's failure is the exception, or (exception, traceback frames) in newer releases
        failures = [f[0] if isinstance(f, tuple) and f else f for f in getattr(exc, "failures", {}).values()]
        causes = [f"{type(e).__name__}: {e}" for e in failures]
        raise DcpError("; ".join(causes) or str(exc)) from None


def save(state: dict[str, Any], folder: Path) -> None:
    """``dcp.save`` into ``folder`` (no process group: DCP runs as a single writer)."""
    import torch.distributed.checkpoint as dcp

    _checked(dcp.save, state, checkpoint_id=str(folder))


def load_into(target: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``dcp.load`` of ``folder`` into ``target`` in place. Unpickles the folder's ``.metadata``.

    A fresh optimizer's state dict has state for every parameter, while a checkpoint has none for a
    parameter that never had a gradient; DCP's planner refuses a target key the checkpoint lacks, so
    optimizer state the checkpoint does not hold is left out of the target first."""
    import torch.distributed.checkpoint as dcp

    saved = set(_checked(dcp.FileSystemReader(str(folder)).read_metadata).state_dict_metadata)
    state = target.get("optim", {}).get("state", {})
    for name in list(state):
        state[name] = {k: v for k, v in state[name].items() if f"optim.state.{name}.{k}" in saved}
        if not state[name]:
            del state[name]
    # the scheduler's keys differ between releases (2.5 has 'verbose', 2.14 '_is_initial'): ask for the
    # ones the checkpoint holds, so that the scheduler state comes back as it was saved
    keys = [k[len("scheduler."):] for k in saved if k.startswith("scheduler.")]
    if "scheduler" in target and keys and not any("." in k for k in keys):
        target["scheduler"] = {k: None for k in keys}
    _checked(dcp.load, target, checkpoint_id=str(folder))
    return target


def optimizer_state_dict(optim: dict[str, Any]) -> dict[str, Any]:
    """DCP's optimizer state (keyed by parameter name) as ``Optimizer.load_state_dict`` takes it (by index)."""
    index: dict[str, int] = {}
    groups = []
    for group in optim["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**group, "params": ids})
    return {"state": {index[name]: value for name, value in optim["state"].items()}, "param_groups": groups}


class DistributedCheckpoint(Format):
    name = "dcp"
    description = ("torch.distributed.checkpoint folder (.metadata + .distcp) of get_model_state_dict / "
                   "get_optimizer_state_dict, scheduler, RNG and epoch; saved and loaded without a process group")
    holds = frozenset({"weights", "optimizer"})
    needs_code = True
    suffix = ""
    view_growth = "DCP's data files also hold the non-tensor state (param groups, scheduler) as pickled bytes"
    capabilities = Capabilities(map_locations=frozenset({"none", "str"}), container="dcp", unpickles=True)

    def unavailable(self) -> Optional[str]:
        return compat.dcp_unavailable()

    def payload(self, prepared: Prepared) -> Any:
        state = app_state(prepared.models["model"], prepared.optimizers["model"])
        return {**state, "scheduler": prepared.schedulers["model"].state_dict(),
                "rng": prepared.rng_state.clone(), "epoch": prepared.steps}

    def save(self, payload: Any, path: Path) -> None:
        save(payload, path)

    def load(self, source: Source, mode: str, map_location: Any, case: Optional[Case]) -> Any:
        if case is None:
            raise RuntimeError("loading a DCP checkpoint needs the case's model to load into")
        model = case.fresh_models()["model"].to("cpu" if map_location is None else str(map_location))
        optimizers, schedulers = make_optimizers(case, {"model": model})
        target = {**app_state(model, optimizers["model"]), "scheduler": schedulers["model"].state_dict(),
                  "rng": torch.get_rng_state(), "epoch": 0}
        return load_into(target, Path(str(source)))

    def modules(self, obj: Any, case: Case) -> dict[str, nn.Module]:
        model = case.fresh_models()["model"]
        model.load_state_dict(obj["model"])
        return {"model": model}

    def resumable(self, obj: Any) -> Optional[Resumable]:
        return Resumable(model_states={"model": obj["model"]},
                         optimizer_states={"model": optimizer_state_dict(obj["optim"])},
                         scheduler_states={"model": obj["scheduler"]}, rng_state=obj["rng"])


register(DistributedCheckpoint())
