"""The pytest plugin: a user's own test suite round-trips its models with ``ckpt_roundtrip``."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module", autouse=True)
def _torch_modules_imported_outside_pytester(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One round trip through every format here first. An in-process pytester run drops the modules it
    imported when it ends; torch modules that register operator libraries (torch.export's, inductor's)
    then fail to register twice in the next run. Imported out here, they are kept."""
    from torch import nn

    from harness.roundtrip import roundtrip_model

    roundtrip_model(nn.Linear(2, 2), (torch.ones(1, 2),), tmp_path_factory.mktemp("warm"))


def _plugin_args() -> list[str]:
    """Load the plugin by name unless an installed harness already offers it through ``pytest11``."""
    installed = any(p.name == "checkpoint_harness" for p in importlib.metadata.entry_points(group="pytest11"))
    return ["-p", "no:cacheprovider"] + ([] if installed else ["-p", "harness.pytest_plugin"])

USER_TESTS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.norm(self.linear(x))


CALLS = [0]


class Drifting(Net):
    """Its output depends on how often it was called: no checkpoint can hold that."""

    def forward(self, x):
        CALLS[0] += 1
        return super().forward(x) + CALLS[0] * 1e-3


def test_sound_model(ckpt_roundtrip):
    result = ckpt_roundtrip(Net(), (torch.randn(5, 4),), formats=["state_dict_zip", "whole_model_zip"])
    assert result.ok and result.formats() == ["state_dict_zip", "whole_model_zip"]


def test_drifting_model(ckpt_roundtrip):
    ckpt_roundtrip(Drifting(), (torch.randn(5, 4),), formats=["state_dict_zip"])


def test_drifting_model_unchecked(ckpt_roundtrip):
    result = ckpt_roundtrip(Drifting(), (torch.randn(5, 4),), formats=["state_dict_zip"], check=False)
    assert not result.ok and result.problems
'''


def test_a_user_suite_round_trips_its_models(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_models=USER_TESTS)
    result = pytester.runpytest_inprocess(*_plugin_args())
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*test_drifting_model*",
        "*checkpoint round trip of user_drifting failed:*",
        "*state_dict_zip / outputs [[]default[]]: fail*unexpected fail*",
    ])


def test_the_fixture_is_offered_by_the_plugin_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_needs_fixture="def test_x(ckpt_roundtrip):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:checkpoint_harness")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'ckpt_roundtrip' not found*"])


@pytest.mark.slow
def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    """The README's plugin example, verbatim, round-trips through every format and passes."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own models in your own tests", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    pytester.makepyfile(test_readme_example=example)
    result = pytester.runpytest_inprocess(*_plugin_args())
    result.assert_outcomes(passed=2)
