"""Run the benchmark module under pytest-benchmark in this interpreter (``ckpt-harness bench``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from pathlib import Path
from typing import Optional

import pytest

#: the packaged benchmark module, found without importing it (pytest imports it, and its plugin, itself)
BENCH_MODULE = importlib.util.find_spec("harness.bench.bench_formats").origin
#: isolates the run from the caller's pytest configuration; TorchScript's deprecation is not a finding here
INI = """[pytest]
addopts = -ra
filterwarnings =
    ignore:`torch.jit:DeprecationWarning
"""


@dataclasses.dataclass
class Options:
    """What ``ckpt-harness bench`` was asked for."""

    json: Path
    sizes: str
    formats: list[str]
    operations: list[str]
    rounds: int = 5
    caches: str = "warm"
    workdir: Optional[Path] = None
    rss: bool = True
    plugins: list[str] = dataclasses.field(default_factory=list)
    verbose: bool = False
    threads: Optional[int] = 1
    clock: str = "wall"


def pytest_args(options: Options, ini: Path) -> list[str]:
    """pytest's command line: the packaged module, the plugin, pytest-benchmark's JSON and gc settings."""
    args = [BENCH_MODULE, "-p", "harness.bench.plugin", "-p", "no:cacheprovider",
            "-c", str(ini), "--rootdir", str(ini.parent),
            f"--benchmark-json={options.json}", "--benchmark-disable-gc",
            "--benchmark-columns=min,median,max,rounds", "--benchmark-sort=name",
            f"--ckpt-sizes={options.sizes}", f"--ckpt-rounds={options.rounds}", f"--ckpt-cache={options.caches}"]
    args += [f"--ckpt-format={f}" for f in options.formats]
    args += [f"--ckpt-operation={o}" for o in options.operations]
    args += [f"--ckpt-plugin={p}" for p in options.plugins]
    if options.workdir:
        args.append(f"--ckpt-workdir={options.workdir}")
    if options.threads:
        args.append(f"--ckpt-threads={options.threads}")
    args.append(f"--ckpt-clock={options.clock}")
    if not options.rss:
        args.append("--ckpt-no-rss")
    args.append("-v" if options.verbose else "-q")
    return args


def run(options: Options) -> int:
    """Run the benchmarks; pytest's exit status (0 when every benchmark ran and checked out)."""
    options.json.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-ini-") as folder:
        ini = Path(folder) / "pytest.ini"
        ini.write_text(INI)
        return int(pytest.main(pytest_args(options, ini)))
