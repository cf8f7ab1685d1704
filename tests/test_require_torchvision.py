"""``CKPT_HARNESS_REQUIRE_TORCHVISION`` (set by ``nox -s tests_vision``): a skip for a missing torchvision fails."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import pytest

def test_skips_for_torchvision():
    pytest.skip("vgg16 needs torchvision: torchvision does not import here: RuntimeError: nms")

def test_skips_for_something_else():
    pytest.skip("needs a GPU")
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_a_torchvision_skip_fails_when_torchvision_is_required(suite: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPT_HARNESS_REQUIRE_TORCHVISION", "1")
    result = suite.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*required by CKPT_HARNESS_REQUIRE_TORCHVISION*torchvision does not import here*"])


def test_a_torchvision_skip_stays_a_skip_otherwise(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CKPT_HARNESS_REQUIRE_TORCHVISION", raising=False)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=2)
