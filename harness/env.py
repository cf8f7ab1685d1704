"""Describe the running environment: what a producer records and what a consumer compares with."""

from __future__ import annotations

import platform
import re
import sys
from typing import Any, cast

import numpy
import torch

from harness import compat
from harness.contracts import EnvBrief


def describe(device: str = "cpu", optional: bool = True) -> dict[str, Any]:
    """The environment as recorded in manifests and result records. ``optional=False`` leaves out the optional
    packages (``torchvision``: None), which :func:`brief` does not keep: importing torchvision takes seconds."""
    return {
        "torch": torch.__version__,
        "torchvision": compat.torchvision_version() if optional else None,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device,
        "cuda": getattr(torch.version, "cuda", None),
        "byteorder": sys.byteorder,
        "default_weights_only": compat.default_weights_only(),
    }


def env_id(env: dict[str, Any]) -> str:
    """A folder-safe id naming an environment, e.g. ``torch-2.13.0+cpu-py3.11-cpu``."""
    python = ".".join(env["python"].split(".")[:2])
    raw = f"torch-{env['torch']}-py{python}-{env['device']}"
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", raw)


def brief(env: dict[str, Any]) -> EnvBrief:
    """The fields a result record keeps of an environment."""
    return cast(EnvBrief, {key: env.get(key) for key in ("torch", "python", "device", "default_weights_only")})


def same_numerics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two environments should compute bit-identical results (same torch, device, machine)."""
    keys = ("torch", "device", "machine", "numpy")
    return all(a.get(k) == b.get(k) for k in keys)
