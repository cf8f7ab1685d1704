"""The public surface: the cases' import name, registries (scoped API, entry-point plugins, check
order), the read-only check context, the public API and the in-process round trip."""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import harness
from harness import _cases, plugins
from harness.case import CASES
from harness.checks import CHECKS, Check, Context, Outcome, passed
from harness.errors import HarnessError
from harness.formats import _torch_pickle
from harness.internal.registry import Registry

REPO = Path(__file__).resolve().parents[1]
consume_module = importlib.import_module("harness.consume")  # `harness.consume` is the public function


# --- the cases' import name -------------------------------------------------------------------------

def test_cases_import_as_harness_cases_from_the_checkout() -> None:
    import harness_cases.simple

    assert Path(harness_cases.__file__).parent == REPO / "cases"
    assert CASES.get("simple").build.__module__ == "harness_cases.simple"


def test_a_user_cases_package_does_not_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "cases"
    user.mkdir()
    (user / "__init__.py").write_text("OWNER = 'user'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cases", raising=False)
    try:
        assert importlib.import_module("cases").OWNER == "user"
    finally:
        sys.modules.pop("cases", None)
    assert "simple" in CASES.names() and "harness_cases.simple" in sys.modules
    assert Path(sys.modules["harness_cases"].__file__).parent == REPO / "cases"


@pytest.mark.parametrize("name, expected", [("cases", "harness_cases"), ("cases.simple", "harness_cases.simple"),
                                            ("casesx.simple", "casesx.simple"), ("torch.nn", "torch.nn")])
def test_only_the_old_case_package_is_renamed(name: str, expected: str) -> None:
    assert _cases.renamed(name) == expected


@pytest.mark.parametrize("fmt", ["whole_model_zip", "whole_model_legacy"])
def test_artifacts_written_before_the_rename_still_load(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = next((REPO / "cases" / "corpus" / "2.5.1").glob(f"*/simple/{fmt}.pt"))
    assert b"cases.simple" in path.read_bytes() and b"harness_cases" not in path.read_bytes()
    monkeypatch.setitem(sys.modules, "cases", None)  # as where the harness is installed: no `cases` of ours
    model = _torch_pickle.load(path, "unsafe", None)
    assert type(model).__module__ == "harness_cases.simple"
    with pytest.raises(ModuleNotFoundError, match="cases"):  # the planted failure: no renaming, no load
        torch.load(path, weights_only=False)


# --- registries ---------------------------------------------------------------------------------------

class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def _registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry[Any]:
    package = tmp_path / "plugpkg"
    package.mkdir()
    (package / "__init__.py").write_text("from harness.internal.registry import Registry\n"
                                         "THINGS = Registry('thing', 'plugpkg', plugins=False)\n")
    (package / "one.py").write_text("from plugpkg import THINGS\nclass T: name = 'one'\nTHINGS.register(T())\n")
    (package / "_private.py").write_text("raise RuntimeError('private modules are not discovered')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("plugpkg")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("plugpkg").THINGS


def test_discovery_is_lazy_and_scoped_changes_are_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    things = _registry(tmp_path, monkeypatch)
    assert "plugpkg.one" not in sys.modules  # nothing registered at import
    assert things.names() == ["one"] and "plugpkg.one" in sys.modules
    with things.temporarily(_Named("two")):
        assert things.names() == ["one", "two"] and things.get("two").name == "two"
    assert things.names() == ["one"]
    with things.only(["one"]):
        assert things.names() == ["one"]
    with pytest.raises(ValueError, match="unknown thing 'nope'; known: one"):
        with things.only(["nope"]):
            pass
    with pytest.raises(ValueError, match="registered twice"):
        things.register(_Named("one"))
    with things.scoped():
        things.register(_Named("three"))
    assert "three" not in things


def _dist(tmp_path: Path, value: str, module_source: str, module: str = "ep_plugin_mod") -> None:
    info = tmp_path / "ep_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\nmine = {value}\n")
    (tmp_path / f"{module}.py").write_text(module_source)


PLUGIN_SOURCE = """
from torch import nn
from harness import Case, register_case
register_case(Case(name="from_entry_point", exercises="a plugin's case", build=lambda: nn.Linear(2, 2),
                   inputs=lambda: (__import__("torch").ones(1, 2),)))
"""


def test_installed_plugins_load_through_the_entry_point_group(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _dist(tmp_path, "ep_plugin_mod", PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded_entry_points", [])
    with CASES.scoped():
        assert "from_entry_point" not in CASES
        assert plugins.load_entry_points(reload=True) == ["mine"]
        assert CASES.get("from_entry_point").exercises == "a plugin's case"
        assert plugins.load_entry_points() == ["mine"]  # once: a second call loads nothing again
    assert "from_entry_point" not in CASES


def test_a_broken_entry_point_plugin_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dist(tmp_path, "ep_broken_mod:setup", "def setup():\n    raise ImportError('needs foo')\n", "ep_broken_mod")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded_entry_points", [])
    with pytest.raises(HarnessError, match=r"'mine' = 'ep_broken_mod:setup' \(from ep-plugin.*ImportError: needs foo"):
        plugins.load_entry_points(reload=True)


# --- check order and the read-only context: tests/test_checks_fast.py (the mutation run's test set) ----


# --- no check changes what the next check sees (the real checks: tests/test_matrix.py) -------------------

class _Zeroes(Check):
    """Planted: zeroes every loaded float tensor in place (declares it, or not)."""

    name = "zz_zeroes"

    def run(self, ctx: Context) -> Outcome:
        for tensor in ctx.fmt.contents(ctx.loaded).values():
            if torch.is_tensor(tensor) and tensor.is_floating_point():
                tensor.data.zero_()
        return passed("zeroed")


def test_a_check_that_changes_what_was_loaded_is_caught(small_artifacts: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_matrix import consume_watching

    artifacts = [a for a in consume_module.collect([small_artifacts]) if a.entry["format"] == "state_dict_zip"]
    with CHECKS.only(["tensors"]), CHECKS.temporarily(_Zeroes()):
        _, changed = consume_watching(artifacts, tmp_path, monkeypatch)
    assert set(changed) == {"zz_zeroes"}
    declared = type("Declared", (_Zeroes,), {"mutates_loaded": True})()
    with CHECKS.only(["tensors"]), CHECKS.temporarily(declared):
        records, changed = consume_watching(artifacts, tmp_path, monkeypatch)
    assert changed == {} and {r.status for r in records if r.check == "tensors"} == {"pass"}


# --- the public API and the in-process round trip -------------------------------------------------------

def test_the_public_api_is_what_all_says() -> None:
    assert sorted(harness.__all__) == sorted(set(harness.__all__))
    for name in harness.__all__:
        obj = getattr(harness, name)
        assert not isinstance(obj, types.ModuleType), name
        assert getattr(obj, "__doc__", None) or isinstance(obj, Registry), f"{name} has no docstring"


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))


class Drifts(Tiny):
    """Planted: its output depends on how often it was called (state no checkpoint can hold)."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Drifts.calls += 1
        return super().forward(x) + Drifts.calls * 1e-3


def test_roundtrip_model_passes_a_sound_model_and_leaves_it_alone(tmp_path: Path) -> None:
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = harness.roundtrip_model(model, (torch.randn(5, 4),), tmp_path, ["state_dict_zip", "whole_model_zip"])
    assert result.ok, result.report()
    assert result.formats() == ["state_dict_zip", "whole_model_zip"]
    statuses = result.statuses()
    assert statuses[("state_dict_zip", "outputs", "default")] == "pass"
    assert statuses[("whole_model_zip", "load", "weights_only")] == "error"  # expected: a pickled module
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.case not in CASES


def test_roundtrip_model_reports_each_failed_check(tmp_path: Path) -> None:
    result = harness.roundtrip_model(Drifts(), (torch.randn(5, 4),), tmp_path, ["state_dict_zip"])
    assert not result.ok
    assert "state_dict_zip / outputs [default]: fail" in result.report()
    with pytest.raises(AssertionError, match="check\\(s\\) failed for user_drifts"):
        result.assert_ok()


# --- the installed wheel ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_wheel_installs_no_top_level_cases_and_offers_the_plugins(tmp_path: Path) -> None:
    """Build the wheel, install it into a folder and import it from a project that has its own ``cases``."""
    import shutil
    import subprocess
    import zipfile

    source = tmp_path / "source"  # a copy: building in the checkout would leave an egg-info on sys.path
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".nox", "corpus", "artifacts", "results",
                                                                "build", "*.egg-info", "__pycache__", ".*cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(source), "-w", str(tmp_path / "wheel")], capture_output=True, text=True,
                           cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"harness",
                                                                                              "harness_cases"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "checkpoint_harness = harness.pytest_plugin" in zipfile.ZipFile(wheel).read(entry_points).decode()
    target, project = tmp_path / "site", tmp_path / "project"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                                str(target), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    (project / "cases").mkdir(parents=True)
    (project / "cases" / "__init__.py").write_text("OWNER = 'user'\n")
    probe = ("import cases, harness, harness_cases; from harness import CASES; "
             "print(cases.OWNER, harness.__file__, harness_cases.__file__, 'simple' in CASES.names())")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=project,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert ran.returncode == 0, ran.stderr
    owner, harness_file, cases_file, found = ran.stdout.split()
    assert owner == "user" and found == "True"
    assert harness_file.startswith(str(target)) and cases_file == str(target / "harness_cases" / "__init__.py")


# --- through the command line ----------------------------------------------------------------------------

def test_importing_harness_registers_nothing() -> None:
    import subprocess

    probe = ("import sys, harness; from harness.internal.registry import Registry; "
             "print(sorted(m for m in sys.modules if m.startswith(('harness_cases', 'harness.checks.', "
             "'harness.formats.', 'harness.partial.scenarios')))); "
             "print([r.kind for r in (harness.CASES, harness.FORMATS, harness.CHECKS) if r._discovered])")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert ran.returncode == 0, ran.stderr
    imported, discovered = ran.stdout.splitlines()
    assert discovered == "[]"
    assert "harness_cases" not in imported and "harness.checks.tensors" not in imported, imported


def test_list_shows_plugins_from_the_option_and_the_entry_point_group(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    _dist(tmp_path, "ep_plugin_mod", PLUGIN_SOURCE)
    listed = run_cli("list", "--plugin", "tests.plugins.broken",
                     extra_env={"PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "broken_flip_bit" in listed.stdout and "from_entry_point" in listed.stdout
    plain = run_cli("list", extra_env={"COLUMNS": "200"})
    assert "broken_flip_bit" not in plain.stdout and "from_entry_point" not in plain.stdout
