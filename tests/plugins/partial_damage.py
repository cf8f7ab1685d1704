"""Targets whose ``load_state_dict`` departs from PyTorch's contract in one way each.

Nothing here registers anything: tests/plugins/partial_broken.py registers scenarios with these
targets for the CLI runs of tests/test_partial.py, which also uses them in-process.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn


class HidesUnexpected(nn.Module):
    """Reports no unexpected keys, whatever the checkpoint holds (the simple case's ``fc.*`` are unexpected here)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(10, 2)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        result = super().load_state_dict(state_dict, strict=False, **kwargs)
        result.unexpected_keys.clear()
        if strict and result.missing_keys:
            raise RuntimeError("Error(s) in loading state_dict: missing keys (names withheld)")
        return result


class SkipsBias(nn.Linear):
    """Silently keeps its own bias instead of the checkpoint's (a lost copy)."""

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        saved = self.bias.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.bias.data.copy_(saved + 1.0)


class SkipsBiasNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = SkipsBias(10, 2)


class OmitsAKey(nn.Module):
    """strict=True raises PyTorch's error with the first unexpected key left out of it."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(10, 2)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        try:
            return super().load_state_dict(state_dict, strict=strict, **kwargs)
        except RuntimeError as exc:
            first = min(k for k in state_dict if not k.startswith("head."))
            raise RuntimeError(str(exc).replace(f'"{first}", ', "").replace(f', "{first}"', "")
                               .replace(f'"{first}"', "")) from None


class GarblesSizeMismatch(nn.Module):
    """Raises on a size mismatch, but with the shapes swapped in the message."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        try:
            return super().load_state_dict(state_dict, strict=strict, **kwargs)
        except RuntimeError as exc:
            raise RuntimeError(re.sub(r"copying a param with shape (torch.Size\(\[[^]]*\]\)) from checkpoint, "
                                      r"the shape in current model is (torch.Size\(\[[^]]*\]\))",
                                      r"copying a param with shape \2 from checkpoint, the shape in current model "
                                      r"is \1", str(exc))) from None

