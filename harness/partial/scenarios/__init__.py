"""One module per partial-load scenario; each registers itself with :func:`harness.partial.register`."""
