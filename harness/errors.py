"""The harness's own error: raised for bad input, printed as one line by the CLI."""


class HarnessError(Exception):
    """A problem with what the user passed in; its message says what to do."""
