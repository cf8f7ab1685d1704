"""The pytest plugin (entry point ``pytest11: checkpoint_harness``): round-trip your models in your tests.

Installed with checkpoint-harness, it gives every test suite the ``ckpt_roundtrip`` fixture::

    def test_my_model_survives_every_format(ckpt_roundtrip):
        model = MyNet()                      # a class at module level (whole-model pickles import it)
        result = ckpt_roundtrip(model, (torch.randn(4, 8),))
        assert "state_dict_zip" in result.formats()

The call saves the model in every applicable format under the test's ``tmp_path``, loads each
artifact back in this process in every load mode and runs the harness's checks. Any unexpected
failure fails the test with one line per failed check (format / check [load mode]: status — detail).
``formats=[...]`` limits the formats; ``check=False`` returns the :class:`harness.roundtrip.RoundTrip`
without failing; other keywords go to :class:`harness.case.Case` (``optimizer="sgd"``, ``atol=1e-4``...).
Run with ``-p no:checkpoint_harness`` to switch it off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Optional

import pytest

RoundTripper = Callable[..., Any]


@pytest.fixture
def ckpt_roundtrip(tmp_path: Path) -> RoundTripper:
    """``ckpt_roundtrip(model, inputs, formats=None, *, check=True, **case_options) -> RoundTrip``."""
    calls = 0

    def run(model: Any, inputs: Any, formats: Optional[Iterable[str]] = None, *, check: bool = True,
            **options: Any) -> Any:
        nonlocal calls
        from harness.roundtrip import roundtrip_model

        calls += 1
        result = roundtrip_model(model, inputs, tmp_path / f"ckpt-roundtrip-{calls}", formats, **options)
        if check and not result.ok:
            pytest.fail(f"checkpoint round trip of {result.case} failed:\n{result.report()}", pytrace=False)
        return result

    return run
