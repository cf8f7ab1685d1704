"""Comparisons shared by the checks: fingerprints by hash, tensors within a tolerance."""

from __future__ import annotations

from typing import Any, Mapping

import torch

FIELDS = ("dtype", "shape", "stride", "requires_grad", "hash")


def fingerprint_differences(expected: Mapping[str, Any], actual: Mapping[str, Any],
                            fields: tuple[str, ...] = FIELDS) -> list[str]:
    """Human-readable differences between two ``{name: tensor description}`` maps."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"missing {_names(missing)}")
    if extra:
        problems.append(f"unexpected {_names(extra)}")
    for name in expected.keys() & actual.keys():
        for field in fields:
            want, got = expected[name].get(field), actual[name].get(field)
            if want != got:
                problems.append(f"{name}: {field} {_short(want)} != {_short(got)}" if field != "hash"
                                else f"{name}: values differ")
    return sorted(problems, key=lambda p: (not p.startswith(("missing", "unexpected")), p))


def summarize(problems: list[str], total: int, what: str = "tensors") -> str:
    head = "; ".join(problems[:4])
    more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
    return f"{len(problems)} problem(s) over {total} {what}: {head}{more}"


def max_abs_difference(expected: Mapping[str, torch.Tensor], actual: Mapping[str, torch.Tensor]) -> tuple[float, str]:
    """Largest absolute difference over matching tensors, and where it is (NaNs equal to NaNs)."""
    worst, where = 0.0, ""
    for name, want in expected.items():
        got = actual[name].detach().cpu()
        if want.shape != got.shape or want.dtype != got.dtype:
            return float("inf"), f"{name}: {tuple(want.shape)}/{want.dtype} vs {tuple(got.shape)}/{got.dtype}"
        if want.numel() == 0:
            continue
        if want.is_floating_point() or want.is_complex():
            # equal values (equal infinities too: inf - inf is NaN) and NaN against NaN are no difference;
            # NaN against a number, or an infinity against anything else, is infinitely far
            same = (want == got) | (torch.isnan(want) & torch.isnan(got))
            diff = torch.where(same, torch.zeros_like(want), want - got).abs().double()
            diff = torch.nan_to_num(diff, nan=float("inf"), posinf=float("inf"))
        else:
            diff = (want.long() - got.long()).abs().double()
        value = float(diff.max())
        if value > worst:
            worst, where = value, name
    return worst, where


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" (+{len(names) - 5})" if len(names) > 5 else "")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
