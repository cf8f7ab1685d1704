"""Private machinery behind the public facade in :mod:`harness`."""
