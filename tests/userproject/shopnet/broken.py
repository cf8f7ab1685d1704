"""Factories that fail, for the harness's bad-input tests."""


def raises():
    raise RuntimeError("the dataset folder is not mounted")
