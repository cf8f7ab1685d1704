"""Wrapper prefixes: ``module.`` (DataParallel/DistributedDataParallel) and ``_orig_mod.`` (torch.compile).

A wrapped model's state_dict loaded into the bare model (strip the prefix), and a bare model's
state_dict loaded into a DataParallel wrapper (add it). The prefix is detected and the fix
proven by a strict load (:mod:`harness.partial.fixes`).
"""

from __future__ import annotations

from torch import nn

from harness.case import Case
from harness.partial import Scenario, register


def _bare(case: Case) -> nn.Module:
    """The model inside the case's wrapper (DataParallel's ``.module``, torch.compile's ``._orig_mod``)."""
    wrapper = case.fresh_models()["model"]
    for attribute in ("module", "_orig_mod"):
        inner = getattr(wrapper, attribute, None)
        if isinstance(inner, nn.Module):
            return inner
    raise TypeError(f"case {case.name}: {type(wrapper).__name__} wraps no module")


def _wrapped_in_data_parallel(case: Case) -> nn.Module:
    from harness_cases.dataparallel import wrap

    return wrap(case.fresh_models()["model"])


register(Scenario(
    name="dataparallel_into_bare",
    description="a DataParallel state_dict ('module.' keys) into the bare model: strip the prefix",
    source_cases=("dataparallel",),
    build_target=_bare,
    fix="prefix",
))

register(Scenario(
    name="compiled_into_eager",
    description="a torch.compile state_dict ('_orig_mod.' keys) into the eager model: strip the prefix",
    source_cases=("compiled",),
    build_target=_bare,
    fix="prefix",
))

register(Scenario(
    name="bare_into_dataparallel",
    description="a plain state_dict into a DataParallel wrapper: add the 'module.' prefix",
    source_cases=("simple",),
    build_target=_wrapped_in_data_parallel,
    fix="prefix",
))
