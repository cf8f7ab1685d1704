"""The seed cases: one module each, registering a :class:`harness.case.Case` on import.

Model classes live at module level here so that whole-model pickles can import them again
in any environment where this package is installed.
"""
