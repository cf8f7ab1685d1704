"""Report renderers: one module per output kind, each calling :func:`harness.report.register`."""
