"""What a checkpoint's top-level object is, and which key prefixes its state_dicts carry.

Works on the skeleton from :mod:`harness.inspect.pickled` (or plain tensor names, for safetensors):
no object from the file is ever built.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from harness.inspect.limits import InspectionLimit
from harness.inspect.pickled import Opaque, TensorRef, module_state

STATE_DICT = "state_dict"
TRAINING = "training checkpoint"
WHOLE_MODULE = "whole module"
MULTI_MODEL = "multi-model dict"

#: keys that training scripts (plain loops, Lightning, HF Trainer) put beside the model state
TRAINING_KEYS = frozenset({"optimizer", "optimizer_state_dict", "optimizer_states", "optim", "epoch", "global_step",
                           "step", "iteration", "scheduler", "lr_scheduler", "scheduler_state_dict", "lr_schedulers",
                           "scaler", "amp", "best_acc", "best_loss", "loss"})

#: prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile
PREFIXES = {"module.": "DataParallel / DistributedDataParallel", "_orig_mod.": "torch.compile"}


def is_state_dict(obj: Any) -> bool:
    """A dict of tensors (a ``_metadata`` attribute aside), with at least one tensor."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, TensorRef) for v in obj.values())


def _holds_model(obj: Any) -> bool:
    return is_state_dict(obj) or module_state(obj) is not None


def classify(root: Any) -> str:
    """``state_dict``, ``training checkpoint``, ``whole module``, ``multi-model dict``, or what the object is."""
    if module_state(root) is not None:
        return WHOLE_MODULE
    if isinstance(root, TensorRef):
        return "tensor"
    if is_state_dict(root):
        return STATE_DICT
    if isinstance(root, dict):
        models = [key for key, value in root.items() if _holds_model(value) and not _is_optimizer_key(key)]
        if len(models) >= 2:
            return MULTI_MODEL
        if models and TRAINING_KEYS & {str(k) for k in root}:
            return TRAINING
        if models:
            return f"{STATE_DICT} under {models[0]!r}"
        return "dict without model state"
    if isinstance(root, Opaque):
        return f"object of {root.qualified}"
    return type(root).__name__


def _is_optimizer_key(key: Any) -> bool:
    return "optim" in str(key)


def state_dicts(root: Any, max_keys: int = 2_000_000) -> list[list[str]]:
    """Key lists of the model state the checkpoint holds: the root, its dict values, or a whole module's parameters.

    A whole module's keys are at most ``max_keys`` (a module graph that shares submodules many
    times over expands without bound): past it, :class:`InspectionLimit`.
    """
    if is_state_dict(root):
        return [[str(k) for k in root]]
    if isinstance(root, dict):
        return [[str(k) for k in value] for key, value in root.items()
                if is_state_dict(value) and not _is_optimizer_key(key)]
    state = module_state(root)
    if state is not None:
        return [list(_module_keys(root, max_keys))]
    return []


def _module_keys(root: Any, max_keys: int) -> Iterable[str]:
    """``conv.weight``, ``head.bias``, ...: depth first, without recursion; a module that contains
    itself (a cycle) is not entered again."""
    count = 0
    stack: list[tuple[Any, str, frozenset[int]]] = [(root, "", frozenset())]
    while stack:
        module, prefix, ancestors = stack.pop()
        state = module_state(module) or {}
        for group in ("_parameters", "_buffers"):
            members = state.get(group)
            for name, value in (members.items() if isinstance(members, dict) else ()):
                if value is not None:
                    count += 1
                    if count > max_keys:
                        raise InspectionLimit(f"the pickled module has more than {max_keys:,} parameters and "
                                              "buffers counting shared submodules once per use")
                    yield prefix + str(name)
        children = state.get("_modules")
        inner = ancestors | {id(module)}
        for name, child in reversed(list(children.items()) if isinstance(children, dict) else []):
            if id(child) not in inner and module_state(child) is not None:
                stack.append((child, f"{prefix}{name}.", inner))


def prefixes(key_lists: list[list[str]]) -> dict[str, int]:
    """Wrapper prefixes carried by every key of some state_dict, with how many keys carry them."""
    found: dict[str, int] = {}
    for keys in key_lists:
        for prefix in PREFIXES:
            if keys and all(k.startswith(prefix) for k in keys):
                found[prefix] = found.get(prefix, 0) + len(keys)
    return found


def whole_module_class(root: Any) -> Optional[str]:
    """The pickled module's class (``mypkg.models.Net``) for a whole-module pickle."""
    return root.qualified if module_state(root) is not None else None
