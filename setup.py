"""Packages only (everything else is in pyproject.toml): ``harness`` and its subpackages, and the
``cases/`` folder installed under our own import name ``harness_cases`` (never a top-level ``cases``)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["harness", "harness.*"]) + ["harness_cases"],
    package_dir={"harness_cases": "cases"},
)
