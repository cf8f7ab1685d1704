"""A planted slowdown: the registered ``state_dict_zip`` format, wrapped to sleep in proportion to size.

Loaded as a plugin (``--plugin tests.plugins.slow``) by tests/test_bench.py. The wrapped save
and load do the real work, then sleep one second per ``CKPT_HARNESS_SLOW_MBPS`` megabytes of
the file (default 40), so a 4 MB benchmark becomes ~100 ms slower: the regression that
``bench-compare`` must flag. The format keeps its name, so the benchmarks match the unwrapped run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from harness.formats import FORMATS

RATE_VARIABLE = "CKPT_HARNESS_SLOW_MBPS"
WRAPPED = "state_dict_zip"


def _sleep_for(path: Path) -> None:
    megabytes_per_second = float(os.environ.get(RATE_VARIABLE, "40"))
    time.sleep(Path(path).stat().st_size / (megabytes_per_second * 1e6))


def _slow_save(save: Callable[[Any, Path], None]) -> Callable[[Any, Path], None]:
    def slow_save(payload: Any, path: Path) -> None:
        save(payload, path)
        _sleep_for(path)

    return slow_save


def _slow_load(load: Callable[..., Any]) -> Callable[..., Any]:
    def slow_load(path: Path, *args: Any, **kwargs: Any) -> Any:
        loaded = load(path, *args, **kwargs)
        _sleep_for(path)
        return loaded

    return slow_load


_format = FORMATS.get(WRAPPED)
_format.save = _slow_save(_format.save)
_format.load = _slow_load(_format.load)
