"""The pytest plugin behind ``ckpt-harness bench``: options, the benchmark plan, machine info.

Loaded with ``-p harness.bench.plugin`` by :mod:`harness.bench.runner`. It turns the
``--ckpt-*`` options into one parametrized benchmark per (size, format, operation, cache
state), ordered size by size (each size's benchmarks are timed together, interleaved), and extends
pytest-benchmark's machine info and JSON with what the figures depend on.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from harness.bench import pagecache
from harness.bench.interleave import THREAD_VARIABLES
from harness.bench.items import Item
from harness.bench.operations import NO_CACHE, OPERATIONS, by_kind
from harness.bench.payload import bench_case, formats_for
from harness.bench.sizes import DEFAULT_SIZES, parse_sizes


@dataclasses.dataclass
class Settings:
    """The parsed ``--ckpt-*`` options and what the machine allows."""

    sizes: list[int]
    formats: list[str]
    operations: list[str]
    rounds: int
    caches: list[str]
    workdir: Path
    rss: bool
    plugins: list[str]
    cold_unavailable: Optional[str] = None
    clock: str = "wall"


SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ckpt-harness bench")
    group.addoption("--ckpt-sizes", default=DEFAULT_SIZES, help="payload sizes, e.g. 1MB,64MB,512MB")
    group.addoption("--ckpt-format", action="append", default=[], help="format to benchmark (repeatable; 'all')")
    group.addoption("--ckpt-operation", action="append", default=[], help="only this operation (repeatable)")
    group.addoption("--ckpt-rounds", type=int, default=5, help="timed rounds per benchmark")
    group.addoption("--ckpt-cache", default="warm", help="page-cache states for loads: warm, cold or warm,cold")
    group.addoption("--ckpt-workdir", default=None, help="folder for the benchmark's files (default: a temp folder)")
    group.addoption("--ckpt-no-rss", action="store_true", help="skip the peak-RSS probe")
    group.addoption("--ckpt-plugin", action="append", default=[], help="plugin module the RSS probe imports too")
    group.addoption("--ckpt-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    group.addoption("--ckpt-clock", default="wall", choices=("wall", "cpu"), help="what a round's time is")


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    caches = [c.strip() for c in option.ckpt_cache.split(",") if c.strip()]
    workdir = Path(option.ckpt_workdir) if option.ckpt_workdir else Path(tempfile.gettempdir())
    settings = Settings(parse_sizes(option.ckpt_sizes), option.ckpt_format, option.ckpt_operation,
                        option.ckpt_rounds, caches, workdir, not option.ckpt_no_rss, option.ckpt_plugin,
                        clock=option.ckpt_clock)
    if "cold" in caches:
        settings.cold_unavailable = pagecache.cold_unavailable(workdir)
    config.stash[SETTINGS] = settings
    if option.ckpt_threads:
        from harness.bench.interleave import pin_threads

        pin_threads(option.ckpt_threads)


def plan(settings: Settings) -> Iterator[Item]:
    """Every benchmark to run, size by size: the baselines, then each format's operations."""
    caches = [c for c in settings.caches if not (c == "cold" and settings.cold_unavailable)]
    wanted = set(settings.operations or OPERATIONS)
    for size in settings.sizes:
        groups = [(None, by_kind("baseline"))] + [
            (fmt.name, by_kind("format")) for fmt in formats_for(settings.formats, bench_case(size))]
        for fmt, operations in groups:
            for operation in operations:
                if fmt is None or operation.name in wanted:
                    for cache in operation.caches:
                        if cache == NO_CACHE or cache in caches:
                            yield Item(size, fmt, operation.name, cache)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "item" in metafunc.fixturenames:
        items = list(plan(metafunc.config.stash[SETTINGS]))
        metafunc.parametrize("item", items, ids=[i.id for i in items])


def machine_info(settings: Settings) -> dict[str, Any]:
    """What the figures depend on beyond pytest-benchmark's own machine info."""
    import torch

    from harness import compat
    from harness.bench.rss import reset_peak
    from harness.env import describe, env_id

    return {
        "torch": torch.__version__,
        "cuda": getattr(torch.version, "cuda", None),
        "cuda_devices": compat.cuda_device_count(),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "harness_env": env_id(describe("cpu")),
        "page_cache": {
            "warm": "file read once before every round, all pages verified resident with mincore",
            "cold": ("unavailable: " + settings.cold_unavailable) if settings.cold_unavailable else (
                "fsync + POSIX_FADV_DONTNEED before every round, no page resident (mincore)"
                if "cold" in settings.caches else "not requested (--cache warm,cold to measure it)"),
            "workdir": str(settings.workdir),
        },
        "peak_rss": (reset_peak() or "VmHWM above pre-load VmRSS in a separate process") if settings.rss
        else "not measured",
        "rounds": settings.rounds,
        "clock": settings.clock,
        "interleaved": "each size's benchmarks take turns round by round, in two identical series (A/A)",
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info.update(machine_info_for(config))


def machine_info_for(config: pytest.Config) -> dict[str, Any]:
    return machine_info(config.stash[SETTINGS])


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    from harness.bench.results import annotate

    annotate(output_json["benchmarks"])
