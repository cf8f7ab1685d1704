"""Release environments a slow test needs: skip without them, or fail where CI requires them.

``CKPT_HARNESS_REQUIRE_RELEASES=2.5.1,2.13.0`` (set by ``nox -s upgrade_e2e``) turns the skip for a missing
environment of a listed release into a failure, so an end-to-end session cannot pass by skipping everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.checkfile import envs


def required() -> set[str]:
    return {r for r in os.environ.get("CKPT_HARNESS_REQUIRE_RELEASES", "").split(",") if r}


def need(*releases: str) -> dict[str, Path]:
    """Each release's interpreter; skip (or fail, when required) naming the missing ones."""
    found = {r: envs.find(r) for r in releases}
    missing = [r for r, python in found.items() if python is None]
    if missing:
        why = (f"needs the {', '.join(f'torch-{r}' for r in missing)} release environment(s) "
               f"(.nox/releases or $CKPT_HARNESS_ENVS)")
        if required() & set(missing):
            pytest.fail(f"{why}: required by CKPT_HARNESS_REQUIRE_RELEASES", pytrace=False)
        pytest.skip(why)
    return {r: python for r, python in found.items() if python is not None}
